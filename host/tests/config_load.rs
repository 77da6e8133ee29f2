//! Valid pipeline files: every value arrives in `Pipeline` as written, defaults fill the
//! rest, topics are qualified, and secrets stay out of `Debug` and `Display`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use magnetar::config::{
    self, DEFAULT_HEALTH_LISTEN, DatabaseUrl, Grant, InitialPosition, Limits, MailTransport,
    RetryPolicy, SmtpTls, StageInputs, SubscriptionType,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
        .join("pipeline.yaml")
}

fn fixture_env(name: &str) -> Option<String> {
    let value = match name {
        "PULSAR_TOKEN" => "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
        "SMTP_PASSWORD" => "hunter2",
        "DB_PLUGIN_SECRET" => "plugin-secret-42",
        "WORKERS" => "4",
        _ => return None,
    };
    Some(value.to_owned())
}

fn parse_fixture(name: &str) -> config::Pipeline {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    config::parse(&text, &path, &fixture_env).unwrap_or_else(|errors| panic!("{errors}"))
}

/// Parses a pipeline written inline, resolving plugin paths against the `full` fixture.
fn parse_inline(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> config::Pipeline {
    config::parse(yaml, &fixture("full"), env).unwrap_or_else(|errors| panic!("{errors}"))
}

fn topic(name: &str) -> String {
    format!("persistent://public/default/{name}")
}

#[test]
fn full_file_round_trips() {
    let pipeline = parse_fixture("full");
    let dir = fixture("full").parent().unwrap().to_owned();

    assert_eq!(pipeline.path, fixture("full"));
    assert_eq!(
        pipeline.broker.url.expose().as_str(),
        "pulsar+ssl://broker.example.com:6651"
    );
    assert_eq!(
        pipeline.broker.token.as_ref().map(|token| token.expose()),
        Some("eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl")
    );
    assert_eq!(
        pipeline.health.unwrap().listen,
        "0.0.0.0:9500".parse().unwrap()
    );

    let database = pipeline.database.as_ref().unwrap();
    assert!(matches!(&database.url, DatabaseUrl::Sqlite(path) if *path == dir.join("magnetar.db")));
    assert_eq!(database.migrations, Some(dir.join("migrations/sqlite")));
    assert_eq!(database.max_connections, 4);

    let mail = pipeline.mail.as_ref().unwrap();
    assert_eq!(mail.from.to_string(), "Magnetar <catalogue@example.com>");
    let MailTransport::Smtp(smtp) = &mail.transport else {
        panic!("not smtp: {:?}", mail.transport)
    };
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.tls),
        ("mail.example.com", 587, SmtpTls::StartTls)
    );
    let credentials = smtp.credentials.as_ref().unwrap();
    assert_eq!(credentials.username, "catalogue");
    assert_eq!(credentials.password.expose(), "hunter2");

    assert_eq!(pipeline.stages.len(), 3);
    let store = &pipeline.stages[0];
    assert_eq!(store.name, "store-movies");
    assert_eq!(store.plugin, dir.join("plugins/db_writer.wasm"));
    let StageInputs::Topics(inputs) = &store.inputs else {
        panic!("not topics: {:?}", store.inputs)
    };
    assert_eq!(
        inputs,
        &[
            topic("movies"),
            "persistent://acme/media/films".to_owned(),
            "non-persistent://acme/media/live".to_owned()
        ]
    );
    assert_eq!(store.subscription, "db-writer");
    assert_eq!(store.subscription_type, SubscriptionType::KeyShared);
    assert_eq!(store.initial_position, InitialPosition::Latest);
    assert_eq!(
        store.outputs,
        BTreeMap::from([
            ("default".to_owned(), topic("movies-stored")),
            (
                "rejected".to_owned(),
                "persistent://acme/media/rejected".to_owned()
            ),
        ])
    );
    assert_eq!(
        store.grants,
        BTreeSet::from([Grant::Database, Grant::Publish, Grant::Log, Grant::Config])
    );
    assert_eq!(
        store.config,
        serde_json::json!({
            "table": "movies",
            "batch": 100,
            "strict": true,
            "columns": ["title", "year"],
            "password": "plugin-secret-42",
            "price": "$$5 costs ${LITERAL}",
        })
    );
    assert_eq!(
        store.retry,
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(120),
        }
    );
    assert_eq!(store.dead_letter, topic("movies-dead"));
    assert_eq!(store.retry_topic, "persistent://acme/media/movies-retry");
    assert_eq!(
        store.limits,
        Limits {
            timeout: Duration::from_secs(10),
            memory: 128 << 20,
            max_message_size: 512 << 10
        }
    );
    assert_eq!(store.parallelism, 4);

    let notify = &pipeline.stages[1];
    let StageInputs::Pattern(pattern) = &notify.inputs else {
        panic!("not a pattern: {:?}", notify.inputs)
    };
    assert_eq!(pattern.namespace, "public/default");
    assert!(pattern.regex.is_match(&topic("movies-stored")));
    assert!(!pattern.regex.is_match(&topic("old-movies-stored")));
    assert_eq!(notify.dead_letter, topic("notify-DLQ"));
    assert_eq!(notify.retry_topic, topic("notify-RETRY"));
    assert_eq!(
        notify.grants,
        BTreeSet::from([Grant::Mail, Grant::Log, Grant::Config])
    );

    let dead_letters = &pipeline.stages[2];
    assert_eq!(dead_letters.subscription_type, SubscriptionType::Failover);
    assert_eq!(dead_letters.limits.max_message_size, 1_000_000);
}

#[test]
fn minimal_file_gets_defaults() {
    let pipeline = config::load(&fixture("minimal")).unwrap_or_else(|errors| panic!("{errors}"));

    assert!(pipeline.broker.token.is_none());
    assert_eq!(pipeline.health.unwrap().listen, DEFAULT_HEALTH_LISTEN);
    assert!(pipeline.database.is_none());
    assert!(pipeline.mail.is_none());

    let stage = &pipeline.stages[0];
    assert_eq!(stage.subscription, "store-movies");
    assert_eq!(stage.subscription_type, SubscriptionType::Shared);
    assert_eq!(stage.initial_position, InitialPosition::Earliest);
    assert!(stage.outputs.is_empty());
    assert_eq!(stage.grants, BTreeSet::from([Grant::Log, Grant::Config]));
    assert_eq!(stage.config, serde_json::json!({}));
    assert_eq!(stage.retry, RetryPolicy::default());
    assert_eq!(stage.retry.max_attempts, 5);
    assert_eq!(stage.dead_letter, topic("movies-store-movies-DLQ"));
    assert_eq!(stage.retry_topic, topic("movies-store-movies-RETRY"));
    assert_eq!(stage.dead_letter_subscription, None);
    assert_eq!(stage.limits, Limits::default());
    assert_eq!(stage.limits.timeout, Duration::from_secs(5));
    assert_eq!(stage.limits.memory, 64 << 20);
    assert_eq!(stage.limits.max_message_size, 1 << 20);
    assert_eq!(stage.parallelism, 1);
}

#[test]
fn short_topics_expand_to_public_default() {
    let pipeline = parse_inline(
        r#"
broker: { url: pulsar://127.0.0.1:6650 }
stages:
  - name: copy
    plugin: plugins/db_writer.wasm
    inputs: [movies, acme/media/films, persistent://acme/media/shows]
    outputs: { default: copies, audit: acme/audit/copies }
    grants: [publish]
    dead_letter: acme/media/copy-failures
    dead_letter_subscription: review
"#,
        &|_| None,
    );

    let stage = &pipeline.stages[0];
    let StageInputs::Topics(inputs) = &stage.inputs else {
        panic!("not topics")
    };
    assert_eq!(inputs[0], "persistent://public/default/movies");
    assert_eq!(inputs[1], "persistent://acme/media/films");
    assert_eq!(inputs[2], "persistent://acme/media/shows");
    assert_eq!(
        stage.outputs["default"],
        "persistent://public/default/copies"
    );
    assert_eq!(stage.outputs["audit"], "persistent://acme/audit/copies");
    assert_eq!(stage.dead_letter, "persistent://acme/media/copy-failures");
    assert_eq!(stage.dead_letter_subscription.as_deref(), Some("review"));
    assert_eq!(stage.retry_topic, "persistent://public/default/movies-copy-RETRY");
}

#[test]
fn health_listen_off_disables_endpoint() {
    let pipeline = parse_inline(
        "broker: { url: pulsar://127.0.0.1:6650 }\n\
         health: { listen: \"off\" }\n\
         stages: [{ name: a, plugin: plugins/db_writer.wasm, inputs: [movies] }]\n",
        &|_| None,
    );
    assert!(pipeline.health.is_none());
}

#[test]
fn env_value_cannot_change_structure() {
    let env = |name: &str| (name == "NOTE").then(|| "a: [b]\nstages: []\n# c".to_owned());
    let pipeline = parse_inline(
        r#"
broker: { url: pulsar://127.0.0.1:6650 }
stages:
  - name: a
    plugin: plugins/db_writer.wasm
    inputs: [movies]
    config: { note: "${NOTE}" }
"#,
        &env,
    );
    assert_eq!(pipeline.stages.len(), 1);
    assert_eq!(pipeline.stages[0].config["note"], "a: [b]\nstages: []\n# c");
}

#[test]
fn server_database_urls_are_normalized() {
    let cases = [
        (
            "mariadb://app:pw@127.0.0.1:3306/magnetar",
            "mysql://app:pw@127.0.0.1:3306/magnetar",
        ),
        (
            "postgresql://app:pw@127.0.0.1/magnetar",
            "postgres://app:pw@127.0.0.1/magnetar",
        ),
    ];
    for (written, expected) in cases {
        let pipeline = parse_inline(
            &format!(
                "broker: {{ url: pulsar://127.0.0.1:6650 }}\n\
                 database: {{ url: \"{written}\" }}\n\
                 stages: [{{ name: a, plugin: plugins/db_writer.wasm, inputs: [movies], grants: [database] }}]\n"
            ),
            &|_| None,
        );
        let url = match &pipeline.database.as_ref().unwrap().url {
            DatabaseUrl::MySql(url) | DatabaseUrl::Postgres(url) => url.expose().to_string(),
            DatabaseUrl::Sqlite(path) => panic!("parsed as sqlite: {}", path.display()),
        };
        assert_eq!(url, expected);
    }
}

#[test]
fn secrets_stay_out_of_debug_and_display() {
    let pipeline = parse_fixture("full");
    let debug = format!("{pipeline:?}");
    let mail = pipeline.mail.as_ref().unwrap().transport.to_string();

    for secret in [
        "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
        "hunter2",
        "plugin-secret-42",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}: {debug}");
        assert!(!mail.contains(secret), "Display shows {secret}: {mail}");
    }
    assert!(debug.contains("Secret(***)"), "{debug}");
    assert_eq!(
        mail,
        "smtp://catalogue:***@mail.example.com:587?tls=starttls"
    );

    let pipeline = parse_inline(
        "broker: { url: pulsar://127.0.0.1:6650 }\n\
         database: { url: \"postgres://app:${DB_PASSWORD}@127.0.0.1/magnetar?sslpassword=${DB_PASSWORD}\" }\n\
         stages: [{ name: a, plugin: plugins/db_writer.wasm, inputs: [movies], grants: [database] }]\n",
        &|name| (name == "DB_PASSWORD").then(|| "s3cr3t-pw".to_owned()),
    );
    let database = pipeline.database.unwrap();
    assert!(
        !format!("{database:?}").contains("s3cr3t-pw"),
        "{database:?}"
    );
    assert_eq!(
        database.url.to_string(),
        "postgres://app:***@127.0.0.1/magnetar?sslpassword=***"
    );
}

#[test]
fn unread_dead_letters_skip_kept_topics() {
    let pipeline = parse_inline(
        r#"
broker: { url: pulsar://127.0.0.1:6650 }
stages:
  - { name: a, plugin: plugins/db_writer.wasm, inputs: [movies], dead_letter: failed, dead_letter_subscription: review }
  - { name: b, plugin: plugins/db_writer.wasm, inputs: [shows], dead_letter: failed }
  - { name: c, plugin: plugins/db_writer.wasm, inputs: [books], dead_letter: lost }
"#,
        &|_| None,
    );
    let unread: Vec<&str> = pipeline.stages_with_unread_dead_letters().iter().map(|stage| stage.name.as_str()).collect();
    assert_eq!(unread, ["c"]);
}

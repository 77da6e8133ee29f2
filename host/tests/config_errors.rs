//! Invalid pipeline files: each problem is reported with its path, its place in the file and
//! a hint, all problems of a file are reported at once, and secrets never appear in them.

use std::path::{Path, PathBuf};

use magnetar::config::{self, ConfigErrors, Location, Problem};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
        .join("pipeline.yaml")
}

/// Parses `yaml` as if it sat in the `full` fixture folder, whose plugins exist, and returns
/// its problems.
fn problems(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> ConfigErrors {
    match config::parse(yaml, &fixture("full"), env) {
        Ok(pipeline) => panic!("expected problems, got {pipeline:?}"),
        Err(errors) => errors,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Returns the only problem at `path`, failing with the whole list otherwise.
fn only_at<'a>(errors: &'a ConfigErrors, path: &str) -> &'a Problem {
    let found = errors.at(path);
    assert_eq!(
        found.len(),
        1,
        "expected one problem at {path}, got:\n{errors}"
    );
    found[0]
}

/// Returns a pipeline with one stage named `store-movies`, followed by `stage_lines`, which
/// must be indented as keys of that stage.
fn one_stage(stage_lines: &str) -> String {
    format!(
        "broker:\n  url: pulsar://127.0.0.1:6650\nstages:\n  - name: store-movies\n    plugin: plugins/db_writer.wasm\n{stage_lines}"
    )
}

#[test]
fn misspelled_key_suggests_known_one() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    subscripton: db-writer\n"),
        &no_env,
    );

    let problem = only_at(&errors, "stages[0].subscripton");
    assert_eq!(problem.message, "unknown key `subscripton`");
    assert_eq!(
        problem.hint.as_deref(),
        Some("did you mean `subscription`?")
    );
    assert_eq!(problem.location, Some(Location { line: 7, column: 5 }));
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn unknown_key_far_from_any_lists_valid_keys() {
    let errors = problems(
        "broker:\n  url: pulsar://127.0.0.1:6650\n  colour: blue\nstages: []\n",
        &no_env,
    );

    let problem = only_at(&errors, "broker.colour");
    assert_eq!(problem.hint.as_deref(), Some("valid keys: url, token"));
}

#[test]
fn missing_plugin_names_path_and_build_command() {
    let yaml = "broker: { url: pulsar://127.0.0.1:6650 }\n\
                stages: [{ name: a, plugin: plugins/price_checker.wasm, inputs: [movies] }]\n";
    let errors = problems(yaml, &no_env);

    let problem = only_at(&errors, "stages[0].plugin");
    let expected = fixture("full")
        .parent()
        .unwrap()
        .join("plugins/price_checker.wasm");
    assert_eq!(
        problem.message,
        format!("plugin file `{}` not found", expected.display())
    );
    let hint = problem.hint.as_deref().unwrap();
    assert!(
        hint.contains("cargo build --release --target wasm32-wasip2 -p price-checker"),
        "{hint}"
    );
    assert!(
        hint.contains("the built price_checker.wasm in <target folder>/wasm32-wasip2/release"),
        "{hint}"
    );
}

#[test]
fn unknown_subscription_type_lists_valid_ones() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    subscription_type: round_robin\n"),
        &no_env,
    );

    let problem = only_at(&errors, "stages[0].subscription_type");
    assert_eq!(problem.message, "unknown subscription type `round_robin`");
    assert_eq!(
        problem.hint.as_deref(),
        Some("valid subscription types: shared, key_shared, failover, exclusive")
    );
}

#[test]
fn unknown_grant_lists_valid_grants() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    grants: [log, mial]\n"),
        &no_env,
    );

    let problem = only_at(&errors, "stages[0].grants[1]");
    assert_eq!(
        problem.to_string(),
        "stages[0].grants[1]: unknown grant `mial`; valid grants: database, mail, publish, log, config \
         (line 7, column 19)"
    );
}

#[test]
fn duplicate_stage_name_points_at_second() {
    let yaml = "broker: { url: pulsar://127.0.0.1:6650 }\n\
                stages:\n\
                - { name: copy, plugin: plugins/db_writer.wasm, inputs: [movies] }\n\
                - { name: copy, plugin: plugins/db_writer.wasm, inputs: [films] }\n";
    let errors = problems(yaml, &no_env);

    let problem = only_at(&errors, "stages[1].name");
    assert_eq!(
        problem.message,
        "duplicate stage name `copy`, already used by stages[0]"
    );
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn missing_env_var_names_variable_and_path() {
    let yaml = "broker:\n  url: pulsar://127.0.0.1:6650\n  token: ${PULSAR_TOKEN}\n\
                stages: [{ name: a, plugin: plugins/db_writer.wasm, inputs: [movies] }]\n";
    let errors = problems(yaml, &no_env);

    let problem = only_at(&errors, "broker.token");
    assert_eq!(
        problem.message,
        "environment variable `PULSAR_TOKEN` is not set"
    );
    assert_eq!(
        problem.location,
        Some(Location {
            line: 3,
            column: 10
        })
    );
    // The unresolved string is not validated a second time.
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn broken_file_reports_every_problem() {
    let errors = config::load(&fixture("broken")).unwrap_err();

    let paths: Vec<&str> = errors.iter().map(|problem| problem.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "broker.url",
            "broker.tokn",
            "health.listen",
            "stages[0].subscripton",
            "stages[0].subscription_type",
            "stages[0].grants[0]",
            "stages[0].grants[1]",
            "stages[0].retry.max_attempts",
            "stages[0].retry.initial_backoff",
            "stages[0].limits.memory",
            "stages[0].parallelism",
            "stages[1].name",
            "stages[1].plugin",
            "stages[1].inputs[1]",
            "stages[1].grants[0]",
        ],
        "\n{errors}"
    );
    assert!(
        errors.iter().all(|problem| problem.location.is_some()),
        "{errors}"
    );
    assert_eq!(errors.to_string().lines().count(), 15);
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let errors = problems(
        "broker:\n  url: [pulsar://127.0.0.1:6650\nstages: []\n",
        &no_env,
    );

    assert_eq!(errors.len(), 1, "{errors}");
    let problem = &errors.problems[0];
    assert!(problem.message.starts_with("invalid YAML: "), "{problem}");
    assert!(problem.location.is_some_and(|at| at.line >= 2), "{problem}");
}

#[test]
fn empty_file_asks_for_sections() {
    let errors = problems("", &no_env);
    assert_eq!(errors.problems[0].message, "the file is empty");
}

#[test]
fn database_grant_without_section_says_add_one() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    grants: [database]\n"),
        &no_env,
    );

    let problem = only_at(&errors, "stages[0].grants[0]");
    assert_eq!(
        problem.message,
        "`database` is granted but the file has no `database` section"
    );
    assert!(
        problem
            .hint
            .as_deref()
            .unwrap()
            .starts_with("add a `database:` section"),
        "{problem}"
    );
}

#[test]
fn publish_and_outputs_go_together() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    grants: [publish]\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].grants[0]");
    assert_eq!(
        problem.message,
        "`publish` is granted but the stage has no outputs"
    );

    let errors = problems(
        &one_stage("    inputs: [movies]\n    outputs: { default: stored }\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].outputs");
    assert_eq!(
        problem.message,
        "outputs are declared but `publish` is not granted"
    );
}

#[test]
fn inputs_and_pattern_are_exclusive() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    input_pattern: movies-.*\n"),
        &no_env,
    );
    only_at(&errors, "stages[0].input_pattern");

    let errors = problems(&one_stage(""), &no_env);
    let problem = only_at(&errors, "stages[0]");
    assert_eq!(problem.message, "missing `inputs` or `input_pattern`");
}

#[test]
fn invalid_topics_and_patterns_are_reported() {
    let errors = problems(
        &one_stage(
            "    inputs: [movies, media/movies, movies, \"a b\"]\n    dead_letter: http://x/y/z\n",
        ),
        &no_env,
    );
    only_at(&errors, "stages[0].inputs[1]");
    assert_eq!(
        only_at(&errors, "stages[0].inputs[2]").message,
        "topic `persistent://public/default/movies` is listed twice"
    );
    only_at(&errors, "stages[0].inputs[3]");
    only_at(&errors, "stages[0].dead_letter");

    let errors = problems(&one_stage("    input_pattern: \"movies-(\"\n"), &no_env);
    let problem = only_at(&errors, "stages[0].input_pattern");
    assert!(
        problem
            .message
            .starts_with("invalid regular expression `movies-(`"),
        "{problem}"
    );
}

#[test]
fn durations_and_sizes_show_examples() {
    let errors = problems(
        &one_stage(
            "    inputs: [movies]\n    limits: { timeout: 5 seconds, memory: 64mb, max_message_size: 0 }\n",
        ),
        &no_env,
    );

    let timeout = only_at(&errors, "stages[0].limits.timeout");
    assert_eq!(timeout.message, "invalid duration `5 seconds`");
    assert!(
        timeout.hint.as_deref().unwrap().contains("`5s`"),
        "{timeout}"
    );
    let memory = only_at(&errors, "stages[0].limits.memory");
    assert_eq!(memory.message, "invalid size `64mb`");
    assert!(
        memory.hint.as_deref().unwrap().contains("`64MiB`"),
        "{memory}"
    );
    only_at(&errors, "stages[0].limits.max_message_size");
}

#[test]
fn limits_and_backoff_are_checked_together() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    limits: { memory: 1MiB, max_message_size: 1MiB }\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].limits.max_message_size");
    assert_eq!(
        problem.message,
        "max_message_size (1 MiB) is not less than memory (1 MiB)"
    );

    let errors = problems(
        &one_stage("    inputs: [movies]\n    retry: { initial_backoff: 2m }\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].retry.initial_backoff");
    assert_eq!(
        problem.message,
        "max_backoff (1m) is less than initial_backoff (2m)"
    );
}

#[test]
fn stage_consuming_its_dead_letters_is_rejected() {
    let errors = problems(
        &one_stage("    inputs: [movies, movies-store-movies-DLQ]\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0]");
    assert!(
        problem.message.starts_with("dead letter topic"),
        "{problem}"
    );
}

#[test]
fn stage_consuming_its_retry_topic_is_rejected() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    retry_topic: movies\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].retry_topic");
    assert!(
        problem.message.starts_with("retry topic `persistent://public/default/movies` is also an input"),
        "{problem}"
    );
}

#[test]
fn pattern_matching_default_retry_topic_is_rejected() {
    // The default retry topic is `store-movies-RETRY` in the pattern's namespace.
    let errors = problems(
        &one_stage("    input_pattern: \"persistent://public/default/store-.*\"\n    dead_letter: failed\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0]");
    assert!(problem.message.contains("store-movies-RETRY` is also an input"), "{problem}");
}

#[test]
fn output_to_own_input_is_rejected() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    grants: [publish]\n    outputs: { default: movies }\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].outputs.default");
    assert!(
        problem.message.contains("publishes to `persistent://public/default/movies`, which is also an input"),
        "{problem}"
    );
}

#[test]
fn output_matched_by_own_pattern_is_rejected() {
    let errors = problems(
        &one_stage(
            "    input_pattern: \"persistent://public/default/movies.*\"\n    grants: [publish]\n    \
             outputs: { default: movies-stored }\n    dead_letter: failed\n    retry_topic: again\n",
        ),
        &no_env,
    );
    only_at(&errors, "stages[0].outputs.default");
}

#[test]
fn output_to_own_retry_topic_is_rejected() {
    let errors = problems(
        &one_stage("    inputs: [movies]\n    grants: [publish]\n    retry_topic: again\n    outputs: { default: again }\n"),
        &no_env,
    );
    let problem = only_at(&errors, "stages[0].outputs.default");
    assert!(problem.message.contains("which is also the retry topic of this stage"), "{problem}");
}

#[test]
fn retry_topic_shared_by_two_stages_is_rejected() {
    let yaml = "broker: { url: pulsar://127.0.0.1:6650 }\n\
                stages:\n\
                - { name: a, plugin: plugins/db_writer.wasm, inputs: [movies], retry_topic: again }\n\
                - { name: b, plugin: plugins/mailer.wasm, inputs: [shows], retry_topic: again }\n";
    let errors = problems(yaml, &no_env);
    let problem = only_at(&errors, "stages[1]");
    assert!(
        problem.message.contains("retry topic `persistent://public/default/again` of stages[0] is also its retry topic"),
        "{problem}"
    );
    assert!(errors.at("stages[0]").is_empty(), "reported once: {errors}");
}

#[test]
fn pattern_reading_another_stages_retry_topic_is_rejected() {
    // Stage a's default retry topic is `m-a-RETRY`, which stage b's pattern matches.
    let yaml = "broker: { url: pulsar://127.0.0.1:6650 }\n\
                stages:\n\
                - { name: a, plugin: plugins/db_writer.wasm, inputs: [m], dead_letter: failed }\n\
                - { name: b, plugin: plugins/mailer.wasm, input_pattern: \"persistent://public/default/m-.*\", dead_letter: failed-b, retry_topic: b-again }\n";
    let errors = problems(yaml, &no_env);
    let problem = only_at(&errors, "stages[1]");
    assert!(
        problem.message.contains("retry topic `persistent://public/default/m-a-RETRY` of stages[0] is one of its inputs"),
        "{problem}"
    );
}

#[test]
fn shared_subscription_across_stages_is_rejected() {
    let yaml = "broker: { url: pulsar://127.0.0.1:6650 }\n\
                stages:\n\
                - { name: a, plugin: plugins/db_writer.wasm, inputs: [movies], subscription: s }\n\
                - { name: b, plugin: plugins/mailer.wasm, inputs: [movies], subscription: s }\n";
    let errors = problems(yaml, &no_env);
    let problem = only_at(&errors, "stages[1].subscription");
    assert!(
        problem.message.contains("already used by stages[0]"),
        "{problem}"
    );
}

#[test]
fn error_messages_hide_passwords() {
    let env = |name: &str| (name == "PASSWORD").then(|| "s3cr3t-pw".to_owned());
    let yaml = "broker: { url: \"pulsar://user:${PASSWORD}@127.0.0.1:6650/extra\", token: \" ${PASSWORD}\" }\n\
                database: { url: \"mysql://app:${PASSWORD}@127.0.0.1:99999/magnetar\" }\n\
                mail: { transport: \"smtp://app:${PASSWORD}@mail.example.com?tls=bogus\", from: a@example.com }\n\
                stages: [{ name: a, plugin: plugins/db_writer.wasm, inputs: [movies] }]\n";
    let errors = problems(yaml, &env);

    only_at(&errors, "broker.url");
    only_at(&errors, "broker.token");
    only_at(&errors, "database.url");
    only_at(&errors, "mail.transport");
    let text = format!("{errors}\n{errors:?}");
    assert!(!text.contains("s3cr3t-pw"), "{text}");
}

#[test]
fn missing_file_is_reported() {
    let errors = config::load(Path::new("/nonexistent/pipeline.yaml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors.problems[0]
            .message
            .starts_with("cannot read pipeline file `/nonexistent/pipeline.yaml`")
    );
}

#[test]
fn outside_problems_join_the_list() {
    let mut errors = problems(
        &one_stage("    inputs: [movies]\n    grants: [mial]\n"),
        &no_env,
    );
    errors.push(
        "stages[0]",
        "component imports `mail` but the stage does not grant it",
        Some("add `mail` to `grants`".to_owned()),
    );

    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors.to_string().lines().last(),
        Some(
            "stages[0]: component imports `mail` but the stage does not grant it; add `mail` to `grants`"
        )
    );
}

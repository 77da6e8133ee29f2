//! The pipeline host: connects backends and the broker, then runs every stage until shutdown.

mod breaker;
pub mod consumer;
mod dead_letters;
pub mod health;
pub(crate) mod producer;
pub mod properties;
pub mod worker;

use std::sync::Arc;

use std::time::Duration;

use anyhow::Context as _;
use pulsar::{Authentication, Pulsar, TokioExecutor};
use tokio::sync::{Semaphore, watch};

use crate::capability::database::Database;
use crate::capability::mail::Mailer;
use crate::config::{DatabaseUrl, Grant, MailTransport, Pipeline, SmtpTls, StageConfig, StageInputs, SubscriptionType};
use crate::runtime::stage::Backends;
use crate::runtime::{Runtime, StageRuntime, StageSpec};

use breaker::{Backend, Breaker};
use consumer::Source;
use health::Health;
use producer::Publisher;
use worker::StageContext;

/// Default time in-flight messages get to finish after a shutdown signal.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Connect the capability backends the pipeline declares and apply database migrations.
pub async fn connect_backends(pipeline: &Pipeline) -> anyhow::Result<Backends> {
    let database = match &pipeline.database {
        Some(config) => {
            let url = match &config.url {
                DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
                DatabaseUrl::MySql(url) | DatabaseUrl::Postgres(url) => url.expose().to_string(),
            };
            let database = Database::connect(&url, config.max_connections).await?;
            if let Some(dir) = &config.migrations {
                // The config resolves the backend's own subfolder; `migrate` picks it itself.
                let dir = dir.parent().filter(|_| dir.file_name().is_some_and(|name| name == config.url.backend().name())).unwrap_or(dir);
                database.migrate(dir).await.with_context(|| format!("failed to apply the migrations in {}", dir.display()))?;
            }
            Some(database)
        }
        None => None,
    };
    let mailer = match &pipeline.mail {
        Some(config) => Some(Mailer::new(&mail_url(&config.transport), &config.from.to_string())?),
        None => None,
    };
    Ok(Backends { database, mailer })
}

fn mail_url(transport: &MailTransport) -> String {
    match transport {
        MailTransport::File(dir) => format!("file://{}", dir.display()),
        MailTransport::Smtp(smtp) => {
            let scheme = if smtp.tls == SmtpTls::Tls { "smtps" } else { "smtp" };
            let credentials = match &smtp.credentials {
                Some(c) => format!(
                    "{}:{}@",
                    url::form_urlencoded::byte_serialize(c.username.as_bytes()).collect::<String>(),
                    url::form_urlencoded::byte_serialize(c.password.expose().as_bytes()).collect::<String>()
                ),
                None => String::new(),
            };
            format!("{scheme}://{credentials}{}:{}?tls={}", smtp.host, smtp.port, smtp.tls.name())
        }
    }
}

/// The runtime view of a stage's configuration.
pub fn stage_spec(stage: &StageConfig) -> StageSpec {
    StageSpec {
        name: stage.name.clone(),
        grants: stage.grants.iter().map(|grant| grant.interface_name().to_string()).collect(),
        config: stage.config.clone(),
        outputs: stage.outputs.clone(),
        timeout: stage.limits.timeout,
        memory: stage.limits.memory,
    }
}

/// Run every stage of `pipeline` until `shutdown` turns true, then drain and close.
pub async fn run(pipeline: Pipeline, shutdown: watch::Receiver<bool>, grace: Duration) -> anyhow::Result<()> {
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let backends = connect_backends(&pipeline).await?;

    // Prepare every stage before subscribing to anything, so a bad plugin stops the start.
    let mut prepared = Vec::new();
    for stage in &pipeline.stages {
        let component = runtime.load_component(&stage.plugin)?;
        let stage_runtime = StageRuntime::new(&runtime, &component, stage_spec(stage), backends.clone(), None)?;
        prepared.push((stage.clone(), stage_runtime));
    }

    // The client retries an unreachable broker with backoff; a shutdown signal ends the wait.
    let mut stop = shutdown.clone();
    let pulsar = tokio::select! {
        pulsar = connect_broker(&pipeline) => pulsar?,
        _ = stop.wait_for(|stop| *stop) => {
            tracing::info!("shutdown before the broker answered; nothing was consumed");
            return Ok(());
        }
    };
    dead_letters::keep_dead_letters(&pulsar, &pipeline).await;
    let publisher = Publisher::new(&pulsar);
    let health = Arc::new(Health::default());
    if let Some(stage) = pipeline.stages.first() {
        tokio::spawn(health::probe_broker(pulsar.clone(), stage.retry_topic.clone(), health.clone(), shutdown.clone()));
    }
    if let Some(config) = &pipeline.health {
        let server = health::serve(config.listen, health.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "health endpoint failed");
            }
        });
    }

    let database_breaker = backends.database.clone().map(|db| Breaker::new(Backend::Database(db)));
    let mail_breaker = backends.mailer.clone().map(|mailer| Breaker::new(Backend::Mail(mailer)));

    let mut consumers = Vec::new();
    for (stage, stage_runtime) in prepared {
        let mut breakers = Vec::new();
        if stage.is_granted(Grant::Database) {
            breakers.extend(database_breaker.clone());
        }
        if stage.is_granted(Grant::Mail) {
            breakers.extend(mail_breaker.clone());
        }
        let (counters, connected) = health.register(&stage.name);
        let parallelism = stage.parallelism;
        let ordered = stage.subscription_type != SubscriptionType::Shared;
        let inputs = match &stage.inputs {
            StageInputs::Topics(topics) => Source::Topics(topics.clone()),
            StageInputs::Pattern(pattern) => {
                Source::Pattern { regex: pattern.regex.clone(), namespace: pattern.namespace.clone() }
            }
        };
        let retry = Source::Topics(vec![stage.retry_topic.clone()]);
        let ctx = Arc::new(StageContext {
            config: stage,
            runtime: stage_runtime,
            publisher: publisher.clone(),
            breakers,
            counters,
            connected,
            shutdown: shutdown.clone(),
        });

        let slots = Arc::new(Semaphore::new(parallelism));
        let lanes = ordered.then(|| consumer::start_lanes(&ctx, parallelism));
        for source in [inputs, retry] {
            let task = consumer::run(pulsar.clone(), ctx.clone(), source, slots.clone(), lanes.clone(), grace);
            consumers.push(tokio::spawn(task));
        }
        tracing::info!(stage = %ctx.config.name, parallelism, "stage started");
    }

    for task in consumers {
        if let Err(error) = task.await {
            tracing::error!(%error, "a consumer task failed");
        }
    }
    publisher.close().await;
    tracing::info!("pipeline stopped");
    Ok(())
}

/// Connect to the broker named in the pipeline, with token authentication when configured.
pub async fn connect_broker(pipeline: &Pipeline) -> anyhow::Result<Pulsar<TokioExecutor>> {
    let url = pipeline.broker.url.expose().to_string();
    // The default backoff grows to 30 s, so after a broker restart the client could wait
    // that long before it tries again; 2 s resumes within seconds of the broker's return.
    let retry = pulsar::ConnectionRetryOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..Default::default()
    };
    let mut builder = Pulsar::builder(url.clone(), TokioExecutor).with_connection_retry_options(retry);
    if let Some(token) = &pipeline.broker.token {
        builder = builder.with_auth(Authentication { name: "token".to_string(), data: token.expose().as_bytes().to_vec() });
    }
    builder.build().await.with_context(|| {
        format!(
            "failed to connect to the Pulsar broker at {}; is it running? For development, start one with `scripts/pulsar-standalone start`",
            pipeline.broker.url.redacted()
        )
    })
}


//! Loading and validation of `pipeline.yaml`.
//!
//! [`load`] reads the file, substitutes `${VAR}` references from the environment and checks
//! everything that can be checked without the broker or the components: keys, values, topic
//! names, file paths, and grants against the backend sections. It returns a [`Pipeline`]
//! with every default applied, or a [`ConfigErrors`] listing every problem with its path,
//! as `stages[1].grants[0]`, its line and column, and a hint.
//!
//! Rules that the types alone do not show:
//!
//! - Unknown keys are errors. A key with a null value (`retry:` with nothing after it)
//!   counts as absent, so its defaults apply.
//! - `${NAME}` in any string value is replaced by the environment variable `NAME`, and `$${`
//!   stands for a literal `${`. Substitution happens after parsing, so a value cannot change
//!   the structure of the file. A substituted string may stand in for a number, as
//!   `parallelism: ${WORKERS}`.
//! - Relative paths (`plugin`, a `sqlite://` file, a `file://` outbox, `migrations`) are
//!   resolved against the folder of `pipeline.yaml`.
//! - Topics are written `movies` (in `public/default`), `tenant/namespace/movies`, or with a
//!   `persistent://` or `non-persistent://` scheme, and are stored fully qualified.
//! - `health.listen: off` disables the health endpoint. Without a `health` section it
//!   listens on [`DEFAULT_HEALTH_LISTEN`].
//! - Tokens and passwords are held in [`Secret`] and [`SecretUrl`], whose `Debug` and
//!   `Display` print `***`. Error messages never contain them.
//!
//! Checking that each component imports only the interfaces its stage was granted needs the
//! compiled component, so it is done by the runtime. It can add its findings to the same list
//! with [`ConfigErrors::push`].

mod backends;
mod errors;
mod expand;
mod grants;
mod limits;
mod model;
mod routing;
mod secret;
mod stage;
mod topic;
mod tree;
pub(crate) mod units;
mod validate;

use std::path::Path;

pub use errors::{ConfigErrors, Location, Problem};
pub use model::{
    Broker, DEFAULT_HEALTH_LISTEN, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MEMORY,
    DEFAULT_PARALLELISM, DEFAULT_TIMEOUT, DatabaseBackend, DatabaseConfig, DatabaseUrl, Grant,
    Health, InitialPosition, Limits, MAX_MEMORY, MAX_PARALLELISM, MIN_MEMORY, MailConfig,
    MailTransport, Pipeline, RetryPolicy, SmtpCredentials, SmtpSettings, SmtpTls, StageConfig,
    StageInputs, SubscriptionType, UNREAD_DEAD_LETTERS_ADVICE,
};
pub use secret::{Secret, SecretUrl};
pub use topic::{DEFAULT_NAMESPACE, TopicPattern, expand_topic};

/// Reads and validates the pipeline file at `path`, taking `${VAR}` values from the process
/// environment.
pub fn load(path: &Path) -> Result<Pipeline, ConfigErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            let mut errors = ConfigErrors::new();
            errors.push(
                "",
                format!("cannot read pipeline file `{}`: {error}", path.display()),
                Some("check the path and the file's permissions".to_owned()),
            );
            return Err(errors);
        }
    };

    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Validates pipeline YAML `text` as if it were read from `path`, taking `${VAR}` values from
/// `env`. The file at `path` need not exist: only its folder is used, to resolve relative paths.
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigErrors> {
    let mut root = tree::parse_yaml(text)?;

    let mut errors = ConfigErrors::new();
    expand::expand_env(&mut root, "", env, &mut errors);
    let pipeline = validate::build_pipeline(&root, path, &mut errors);

    // Checks run section by section, so sort their problems into file order.
    errors
        .problems
        .sort_by_key(|problem| problem.location.map(|at| (at.line, at.column)));
    match pipeline {
        Some(pipeline) if errors.is_empty() => Ok(pipeline),
        _ => Err(errors),
    }
}

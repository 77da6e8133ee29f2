//! The `database` capability against real SQLite, MariaDB and PostgreSQL databases.
//!
//! MariaDB and PostgreSQL are the servers that `scripts/services start` runs. The tests
//! read their URLs from MAGNETAR_TEST_MYSQL_URL and MAGNETAR_TEST_PG_URL (set them with
//! `eval "$(scripts/services env)"`) and fail when those are missing. Each test creates its
//! own database, named `magnetar_t_<pid>_<nanos>_<n>`, so tests run in parallel and repeatedly.

mod errors;
mod placeholders;
mod setup;
mod support;
mod values;

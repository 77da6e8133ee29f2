use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;

/// The notifications table as a map from record key to (state, attempts, sent_at set),
/// driven by the statements that `notify` runs.
struct FakeDatabase {
    backend: Backend,
    rows: RefCell<BTreeMap<String, (String, i64, bool)>>,
    /// Fails every statement that starts with the given text.
    failure: Option<(&'static str, DbError)>,
    statements: RefCell<Vec<String>>,
}

impl FakeDatabase {
    fn new() -> FakeDatabase {
        FakeDatabase {
            backend: Backend::Sqlite,
            rows: RefCell::default(),
            failure: None,
            statements: RefCell::default(),
        }
    }

    fn failing(prefix: &'static str, error: DbError) -> FakeDatabase {
        FakeDatabase {
            failure: Some((prefix, error)),
            ..FakeDatabase::new()
        }
    }

    fn row(&self, key: &str) -> Option<(String, i64, bool)> {
        self.rows.borrow().get(key).cloned()
    }

    fn check_failure(&self, statement: &str) -> Result<(), DbError> {
        self.statements.borrow_mut().push(statement.to_string());
        match &self.failure {
            Some((prefix, error)) if statement.starts_with(prefix) => Err(error.clone()),
            _ => Ok(()),
        }
    }
}

fn key_of(params: &[Value]) -> String {
    let Value::Text(key) = &params[0] else {
        panic!("record key is not text")
    };
    key.clone()
}

impl Database for FakeDatabase {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        self.check_failure(statement)?;
        let key = key_of(params);
        let mut rows = self.rows.borrow_mut();
        if statement.starts_with("INSERT INTO notifications") {
            if rows.contains_key(&key) {
                return Err(DbError::UniqueViolation("notifications.record_key".into()));
            }
            rows.insert(key, ("pending".into(), 1, false));
            return Ok(1);
        }
        let Some(row) = rows.get_mut(&key) else {
            return Ok(0);
        };
        if statement.starts_with("UPDATE notifications SET attempts = attempts + 1") {
            if row.0 != "pending" {
                return Ok(0);
            }
            row.1 += 1;
        } else if statement.starts_with("UPDATE notifications SET state = 'sent'") {
            assert!(statement.contains("strftime("), "{statement}");
            row.0 = "sent".into();
            row.2 = true;
        } else {
            panic!("unexpected statement {statement}");
        }
        Ok(1)
    }

    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.check_failure(statement)?;
        assert!(
            statement.starts_with("SELECT state FROM notifications"),
            "{statement}"
        );
        let rows = self.rows.borrow();
        let row = rows
            .get(&key_of(params))
            .map(|(state, _, _)| vec![Value::Text(state.clone())]);
        Ok(Rows {
            columns: vec!["state".into()],
            rows: row.into_iter().collect(),
        })
    }
}

#[derive(Default)]
struct FakeMailer {
    sent: RefCell<Vec<Email>>,
    error: Option<MailError>,
}

impl Mailer for FakeMailer {
    fn send(&self, email: &Email) -> Result<(), MailError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.sent.borrow_mut().push(email.clone());
        Ok(())
    }
}

const KEY: &str = "The Land Girls (1998-06-12)";

fn email() -> Email {
    Email {
        to: vec!["films@example.com".into()],
        cc: Vec::new(),
        reply_to: None,
        subject: "Stored: The Land Girls".into(),
        text_body: "The Land Girls".into(),
        html_body: None,
        message_id: Some(message_id(KEY)),
    }
}

#[test]
fn notify_sends_once_and_marks_sent() {
    let db = FakeDatabase::new();
    let mailer = FakeMailer::default();

    assert_eq!(notify(&db, &mailer, KEY, &email()), Ok(Outcome::Sent));
    assert_eq!(
        notify(&db, &mailer, KEY, &email()),
        Ok(Outcome::AlreadySent)
    );

    assert_eq!(mailer.sent.borrow().len(), 1);
    assert_eq!(db.row(KEY), Some(("sent".into(), 1, true)));
}

#[test]
fn notify_resends_pending_with_same_message_id() {
    let db = FakeDatabase::new();
    db.rows
        .borrow_mut()
        .insert(KEY.into(), ("pending".into(), 1, false));
    let mailer = FakeMailer::default();

    assert_eq!(notify(&db, &mailer, KEY, &email()), Ok(Outcome::Sent));

    assert_eq!(mailer.sent.borrow()[0].message_id, Some(message_id(KEY)));
    assert_eq!(db.row(KEY), Some(("sent".into(), 2, true)));
}

#[test]
fn notify_keeps_pending_when_send_fails() {
    let db = FakeDatabase::new();
    let mailer = FakeMailer {
        error: Some(MailError::TransientRejection("451 try again later".into())),
        ..FakeMailer::default()
    };

    let outcome = notify(&db, &mailer, KEY, &email());

    assert_eq!(
        outcome,
        Err(Failure::Transient(
            "the mail server rejected the email for \"The Land Girls (1998-06-12)\" for now: \
             451 try again later"
                .into()
        ))
    );
    assert_eq!(db.row(KEY), Some(("pending".into(), 1, false)));
}

#[test]
fn notify_classifies_mail_errors() {
    let cases = [
        (
            MailError::Invalid("bad address".into()),
            false,
            "the email for",
        ),
        (
            MailError::PermanentRejection("550 no such user".into()),
            false,
            "the mail server rejected",
        ),
        (
            MailError::TransientRejection("421 busy".into()),
            true,
            "the mail server rejected",
        ),
        (
            MailError::ConnectionFailure("refused".into()),
            true,
            "could not reach the mail server",
        ),
    ];
    for (error, transient, start) in cases {
        let mailer = FakeMailer {
            error: Some(error.clone()),
            ..FakeMailer::default()
        };

        let outcome = notify(&FakeDatabase::new(), &mailer, KEY, &email());

        let reason = match (&outcome, transient) {
            (Err(Failure::Transient(reason)), true) | (Err(Failure::Permanent(reason)), false) => {
                reason
            }
            _ => panic!("{error:?} gave {outcome:?}"),
        };
        assert!(reason.starts_with(start), "{reason}");
    }
}

#[test]
fn notify_sends_nothing_when_database_is_unavailable() {
    let db = FakeDatabase::failing("SELECT", DbError::Unavailable("connection refused".into()));
    let mailer = FakeMailer::default();

    let outcome = notify(&db, &mailer, KEY, &email());

    let Err(Failure::Transient(reason)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.starts_with("the database is unavailable while recording"),
        "{reason}"
    );
    assert!(mailer.sent.borrow().is_empty());
}

#[test]
fn notify_counts_sent_email_as_handled_when_marking_fails() {
    let db = FakeDatabase::failing(
        "UPDATE notifications SET state",
        DbError::Unavailable("server has gone away".into()),
    );
    let mailer = FakeMailer::default();

    let outcome = notify(&db, &mailer, KEY, &email());

    let Ok(Outcome::SentNotRecorded(reason)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.starts_with("the database is unavailable while recording the notification"),
        "{reason}"
    );
    assert_eq!(mailer.sent.borrow().len(), 1);
    assert_eq!(db.row(KEY), Some(("pending".into(), 1, false)));
}

#[test]
fn notify_skips_send_when_concurrent_delivery_sent() {
    // The row appears between the read and the insert, already 'sent'.
    struct RacingDatabase(FakeDatabase);
    impl Database for RacingDatabase {
        fn backend(&self) -> Backend {
            Backend::Sqlite
        }
        fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
            if statement.starts_with("INSERT") {
                self.0
                    .rows
                    .borrow_mut()
                    .insert(KEY.into(), ("sent".into(), 1, true));
            }
            self.0.execute(statement, params)
        }
        fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
            self.0.query(statement, params)
        }
    }
    let db = RacingDatabase(FakeDatabase::new());
    let mailer = FakeMailer::default();

    assert_eq!(
        notify(&db, &mailer, KEY, &email()),
        Ok(Outcome::AlreadySent)
    );
    assert!(mailer.sent.borrow().is_empty());
}

#[test]
fn message_id_is_stable_and_valid() {
    let id = message_id(KEY);

    assert_eq!(id, message_id(KEY));
    assert_ne!(id, message_id("The Land Girls (1998-06-13)"));
    assert!(id.starts_with('<'), "{id}");
    assert!(id.ends_with("@magnetar>"), "{id}");
    assert_eq!(id.len(), 1 + 64 + "@magnetar>".len());
    assert!(id[1..65].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}

#[test]
fn utc_now_sql_differs_per_backend() {
    assert!(utc_now_sql(Backend::Sqlite).starts_with("strftime("));
    assert!(utc_now_sql(Backend::Mysql).starts_with("DATE_FORMAT(UTC_TIMESTAMP()"));
    assert!(utc_now_sql(Backend::Postgres).starts_with("to_char(now() AT TIME ZONE 'UTC'"));
}

#[test]
fn notify_reads_sent_state_from_blob() {
    // A database that returns the state column as bytes, as MySQL does for utf8mb4_bin.
    struct BinaryDatabase(FakeDatabase);
    impl Database for BinaryDatabase {
        fn backend(&self) -> Backend {
            Backend::Mysql
        }
        fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
            self.0.execute(statement, params)
        }
        fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
            let mut rows = self.0.query(statement, params)?;
            for row in &mut rows.rows {
                for value in row.iter_mut() {
                    if let Value::Text(text) = value {
                        *value = Value::Blob(text.clone().into_bytes());
                    }
                }
            }
            Ok(rows)
        }
    }
    let db = BinaryDatabase(FakeDatabase::new());
    db.0.rows
        .borrow_mut()
        .insert(KEY.into(), ("sent".into(), 1, true));
    let mailer = FakeMailer::default();

    assert_eq!(
        notify(&db, &mailer, KEY, &email()),
        Ok(Outcome::AlreadySent)
    );
    assert!(mailer.sent.borrow().is_empty());
}

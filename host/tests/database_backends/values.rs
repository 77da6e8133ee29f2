//! Values written and read back, and column types read by their runtime type.

use magnetar::bindings::database::{Backend, Error, Value};

use crate::support::{ALL_BACKENDS, TestDb, assert_row, text};

/// Records whose every value must read back unchanged on every backend. The blobs are not
/// valid UTF-8, because MySQL returns valid UTF-8 from a binary column as text (see
/// `mysql_binary_column_with_utf8_reads_as_text`).
fn records() -> Vec<Vec<Value>> {
    vec![
        vec![
            text("emoji 🎬🍿 and ✓"),
            Value::Integer(i64::MAX),
            Value::Real(0.1),
            Value::Blob(vec![0x00, 0xff, 0x00, 0x01]),
        ],
        vec![
            text("CafÃ© is mojibake for Café"),
            Value::Integer(i64::MIN),
            Value::Real(-1.5e300),
            Value::Blob(vec![0x80, 0x00]),
        ],
        vec![
            text(""),
            Value::Integer(0),
            Value::Real(0.0),
            Value::Blob(vec![0xc3, 0x28, 0x00]),
        ],
        vec![
            text("quote ' backslash \\ double \" percent % question ?"),
            Value::Integer(-1),
            Value::Real(f64::MIN_POSITIVE),
            Value::Blob(vec![0xfe; 300]),
        ],
        vec![Value::Null, Value::Null, Value::Null, Value::Null],
    ]
}

fn records_table(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TABLE records (id INTEGER PRIMARY KEY, t TEXT, i INTEGER, r REAL, b BLOB)"
        }
        // utf8mb4_bin, as the project's migrations use, so text columns carry the BINARY flag.
        Backend::Mysql => {
            "CREATE TABLE records (id BIGINT PRIMARY KEY, t TEXT, i BIGINT, r DOUBLE, b LONGBLOB) \
             DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        }
        Backend::Postgres => {
            "CREATE TABLE records (id BIGINT PRIMARY KEY, t TEXT, i BIGINT, r DOUBLE PRECISION, b BYTEA)"
        }
    }
}

#[tokio::test]
async fn values_read_back_unchanged() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        test.execute(records_table(backend), vec![]).await;

        for (id, record) in records().into_iter().enumerate() {
            let mut params = vec![Value::Integer(id as i64)];
            params.extend(record);
            let changed = test
                .execute(
                    "INSERT INTO records (id, t, i, r, b) VALUES (?, ?, ?, ?, ?)",
                    params,
                )
                .await;
            assert_eq!(changed, 1, "{backend:?}: rows inserted");
        }

        let rows = test
            .query("SELECT t, i, r, b FROM records ORDER BY id", vec![])
            .await;
        assert_eq!(
            rows.columns,
            ["t", "i", "r", "b"],
            "{backend:?}: column names"
        );
        assert_eq!(rows.rows.len(), records().len(), "{backend:?}: row count");
        for (actual, expected) in rows.rows.iter().zip(records()) {
            assert_row(backend, actual, &expected);
        }
        test.drop_database().await;
    }
}

#[tokio::test]
async fn query_by_parameter_finds_exact_text() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        test.execute(records_table(backend), vec![]).await;
        test.execute(
            "INSERT INTO records (id, t) VALUES (?, ?)",
            vec![Value::Integer(1), text("Café")],
        )
        .await;
        test.execute(
            "INSERT INTO records (id, t) VALUES (?, ?)",
            vec![Value::Integer(2), text("CafÃ©")],
        )
        .await;

        let rows = test
            .query("SELECT id FROM records WHERE t = ?", vec![text("CafÃ©")])
            .await;
        assert_eq!(
            rows.rows.len(),
            1,
            "{backend:?}: matches for the mojibake text"
        );
        assert_row(backend, &rows.rows[0], &[Value::Integer(2)]);
        test.drop_database().await;
    }
}

#[tokio::test]
async fn empty_result_still_names_columns() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        test.execute(records_table(backend), vec![]).await;

        let rows = test
            .query(
                "SELECT id, t AS title FROM records WHERE id = ?",
                vec![Value::Integer(7)],
            )
            .await;
        assert_eq!(rows.columns, ["id", "title"], "{backend:?}: column names");
        assert!(rows.rows.is_empty(), "{backend:?}: rows {:?}", rows.rows);
        test.drop_database().await;
    }
}

/// One statement run with an integer, then a real, then null, then an integer again for
/// the same parameter. PostgreSQL caches prepared statements by SQL text, so this catches
/// a real sent in the integer format of the first preparation.
#[tokio::test]
async fn parameter_types_can_change_between_calls() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        let real_type = if backend == Backend::Postgres {
            "DOUBLE PRECISION"
        } else {
            "DOUBLE"
        };
        test.execute(
            &format!("CREATE TABLE numbers (id BIGINT PRIMARY KEY, x {real_type})"),
            vec![],
        )
        .await;

        let values = [
            Value::Integer(7),
            Value::Real(7.5),
            Value::Null,
            Value::Integer(-3),
        ];
        for (id, value) in values.into_iter().enumerate() {
            test.execute(
                "INSERT INTO numbers (id, x) VALUES (?, ?)",
                vec![Value::Integer(id as i64), value],
            )
            .await;
        }

        let rows = test
            .query("SELECT x FROM numbers ORDER BY id", vec![])
            .await;
        let expected = [
            Value::Real(7.0),
            Value::Real(7.5),
            Value::Null,
            Value::Real(-3.0),
        ];
        for (row, expected) in rows.rows.iter().zip(expected) {
            assert_row(backend, row, &[expected]);
        }
        test.drop_database().await;
    }
}

#[tokio::test]
async fn sqlite_reads_each_value_by_its_own_type() {
    let test = TestDb::new(Backend::Sqlite).await;
    test.execute("CREATE TABLE loose (x)", vec![]).await;
    for value in [
        Value::Integer(1),
        Value::Real(1.5),
        text("1"),
        Value::Blob(vec![1]),
        Value::Null,
    ] {
        test.execute("INSERT INTO loose (x) VALUES (?)", vec![value])
            .await;
    }

    let rows = test
        .query("SELECT x FROM loose ORDER BY rowid", vec![])
        .await;
    let expected = [
        Value::Integer(1),
        Value::Real(1.5),
        text("1"),
        Value::Blob(vec![1]),
        Value::Null,
    ];
    for (row, expected) in rows.rows.iter().zip(expected) {
        assert_row(Backend::Sqlite, row, &[expected]);
    }
}

#[tokio::test]
async fn mysql_column_types_map_to_values() {
    let test = TestDb::new(Backend::Mysql).await;
    test.execute(
        "CREATE TABLE typed (tu TINYINT UNSIGNED, ti TINYINT, bo BOOLEAN, bu BIGINT UNSIGNED, \
         f FLOAT, de DECIMAL(12, 4), d DATE, dt DATETIME(3), ts TIMESTAMP NULL, tm TIME, y YEAR, \
         j JSON, e ENUM('a', 'b'), vb VARBINARY(10), bi BIT(8), c CHAR(3))",
        vec![],
    )
    .await;
    test.execute(
        "INSERT INTO typed VALUES (255, -128, TRUE, 9007199254740993, 0.1, 12345.6789, '2024-05-17', \
         '2024-05-17 08:30:00.250', '2024-05-17 08:30:00', '-12:30:00', 2024, '{\"a\": 1}', 'b', \
         X'00FF', b'101', 'x')",
        vec![],
    )
    .await;

    let rows = test.query("SELECT * FROM typed", vec![]).await;
    let expected = [
        Value::Integer(255),
        Value::Integer(-128),
        Value::Integer(1),
        Value::Integer(9_007_199_254_740_993),
        Value::Real(0.1),
        text("12345.6789"),
        text("2024-05-17"),
        text("2024-05-17T08:30:00.250"),
        text("2024-05-17T08:30:00Z"),
        text("-12:30:00"),
        Value::Integer(2024),
        text("{\"a\": 1}"),
        text("b"),
        Value::Blob(vec![0x00, 0xff]),
        Value::Integer(5),
        text("x"),
    ];
    assert_row(Backend::Mysql, &rows.rows[0], &expected);
    test.drop_database().await;
}

#[tokio::test]
async fn mysql_unsigned_over_i64_max_is_an_error() {
    let test = TestDb::new(Backend::Mysql).await;
    let error = test
        .db
        .query(
            "SELECT CAST(18446744073709551615 AS UNSIGNED) AS big",
            vec![],
        )
        .await
        .unwrap_err();
    let Error::Other(message) = error else {
        panic!("expected other, got {error:?}")
    };
    assert!(message.contains("`big`"), "{message}");
    assert!(message.contains("18446744073709551615"), "{message}");
    test.drop_database().await;
}

/// Documents a known limit: MySQL flags binary-collation text and binary columns alike,
/// so valid UTF-8 in a binary column comes back as text with the same bytes.
#[tokio::test]
async fn mysql_binary_column_with_utf8_reads_as_text() {
    let test = TestDb::new(Backend::Mysql).await;
    test.execute("CREATE TABLE payloads (p LONGBLOB)", vec![])
        .await;
    test.execute(
        "INSERT INTO payloads VALUES (?)",
        vec![Value::Blob(b"{\"a\": 1}\x00".to_vec())],
    )
    .await;

    let rows = test.query("SELECT p FROM payloads", vec![]).await;
    assert_row(Backend::Mysql, &rows.rows[0], &[text("{\"a\": 1}\u{0}")]);
    test.drop_database().await;
}

#[tokio::test]
async fn postgres_column_types_map_to_values() {
    let test = TestDb::new(Backend::Postgres).await;
    let rows = test
        .query(
            "SELECT CAST(1 AS SMALLINT), CAST(2 AS INTEGER), TRUE, CAST(0.1 AS REAL), \
             CAST(12345.6789 AS NUMERIC(12, 4)), CAST(-0.000123 AS NUMERIC), \
             CAST(100000000000000000000 AS NUMERIC), DATE '2024-05-17', \
             TIMESTAMP '2024-05-17 08:30:00.25', TIMESTAMPTZ '2024-05-17 08:30:00+02', \
             TIME '23:59:59.000001', CAST('{\"a\":1}' AS JSONB), CAST('{\"a\":1}' AS JSON), \
             CAST('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' AS UUID), CAST('x' AS CHAR(3)), \
             CAST('NaN' AS NUMERIC), CAST(0 AS NUMERIC), DATE 'infinity'",
            vec![],
        )
        .await;
    let expected = [
        Value::Integer(1),
        Value::Integer(2),
        Value::Integer(1),
        Value::Real(0.1),
        text("12345.6789"),
        text("-0.000123"),
        text("100000000000000000000"),
        text("2024-05-17"),
        text("2024-05-17T08:30:00.250"),
        text("2024-05-17T06:30:00Z"),
        text("23:59:59.000001"),
        text("{\"a\": 1}"),
        text("{\"a\":1}"),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text("x  "),
        text("NaN"),
        text("0"),
        text("infinity"),
    ];
    assert_row(Backend::Postgres, &rows.rows[0], &expected);
    test.drop_database().await;
}

#[tokio::test]
async fn postgres_unsupported_type_names_column_and_cast() {
    let test = TestDb::new(Backend::Postgres).await;
    let error = test
        .db
        .query("SELECT INTERVAL '1 day' AS wait", vec![])
        .await
        .unwrap_err();
    let Error::Other(message) = error else {
        panic!("expected other, got {error:?}")
    };
    assert!(message.contains("`wait`"), "{message}");
    assert!(message.contains("INTERVAL"), "{message}");
    assert!(message.contains("CAST(column AS TEXT)"), "{message}");

    let rows = test
        .query("SELECT CAST(INTERVAL '1 day' AS TEXT)", vec![])
        .await;
    assert_row(Backend::Postgres, &rows.rows[0], &[text("1 day")]);
    test.drop_database().await;
}

/// Documents a known limit: a null parameter has no type on PostgreSQL, so it needs a
/// cast where nothing else gives it one.
#[tokio::test]
async fn postgres_null_without_context_needs_cast() {
    let test = TestDb::new(Backend::Postgres).await;
    let error = test
        .db
        .query("SELECT ? IS NULL", vec![Value::Null])
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Other(ref message) if message.contains("42P18")),
        "{error:?}"
    );

    let rows = test
        .query("SELECT CAST(? AS TEXT) IS NULL", vec![Value::Null])
        .await;
    assert_row(Backend::Postgres, &rows.rows[0], &[Value::Integer(1)]);
    test.drop_database().await;
}

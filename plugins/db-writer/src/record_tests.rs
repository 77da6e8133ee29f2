use serde_json::json;

use super::*;
use crate::testing::{column_index, movies_config};

fn land_girls() -> Json {
    json!({
        "Title": "The Land Girls", "US Gross": 146083, "Worldwide Gross": 146083,
        "US DVD Sales": null, "Production Budget": 8000000, "Release Date": "Jun 12 1998",
        "MPAA Rating": "R", "Running Time min": null, "Distributor": "Gramercy",
        "Source": null, "Major Genre": null, "Creative Type": null, "Director": null,
        "Rotten Tomatoes Rating": null, "IMDB Rating": 6.1, "IMDB Votes": 1071
    })
}

fn build(payload: Json) -> Result<Row, String> {
    let config = movies_config();
    build_row(&config, payload.as_object().unwrap())
}

fn value(row: &Row, column: &str) -> Value {
    row.values[column_index(&movies_config(), column)].clone()
}

fn with(field: &str, value: Json) -> Json {
    let mut payload = land_girls();
    payload[field] = value;
    payload
}

#[test]
fn build_row_converts_dataset_record() {
    let row = build(land_girls()).unwrap();

    assert_eq!(row.key, "The Land Girls (1998-06-12)");
    assert_eq!(value(&row, "title"), Value::Text("The Land Girls".into()));
    assert_eq!(
        value(&row, "release_date"),
        Value::Text("1998-06-12".into())
    );
    assert_eq!(value(&row, "us_gross"), Value::Integer(146083));
    assert_eq!(value(&row, "us_dvd_sales"), Value::Null);
    assert_eq!(value(&row, "imdb_rating"), Value::Real(6.1));
    assert_eq!(row.values.len(), 16);
}

#[test]
fn build_row_coerces_numeric_title_to_text() {
    let row = build(with("Title", json!(1776))).unwrap();

    assert_eq!(value(&row, "title"), Value::Text("1776".into()));
    assert_eq!(row.key, "1776 (1998-06-12)");
}

#[test]
fn build_row_keeps_mojibake_and_emoji() {
    let title = "AstÈrix aux Jeux Olympiques 🎬";

    let row = build(with("Title", json!(title))).unwrap();

    assert_eq!(value(&row, "title"), Value::Text(title.into()));
}

#[test]
fn build_row_rejects_null_title() {
    let error = build(with("Title", Json::Null)).unwrap_err();

    assert_eq!(
        error,
        "field \"Title\" is null, but column title requires a value"
    );
}

#[test]
fn build_row_rejects_missing_and_blank_title() {
    let mut payload = land_girls();
    payload.as_object_mut().unwrap().remove("Title");
    assert_eq!(
        build(payload).unwrap_err(),
        "field \"Title\" is missing, but column title requires a value"
    );

    let error = build(with("Title", json!("  "))).unwrap_err();
    assert_eq!(
        error,
        "field \"Title\" is empty, but column title requires a value"
    );
}

#[test]
fn build_row_rejects_title_over_max_length() {
    let error = build(with("Title", json!("x".repeat(201)))).unwrap_err();

    assert_eq!(
        error,
        "field \"Title\" is 201 characters long, but column title allows at most 200"
    );
}

#[test]
fn build_row_counts_characters_not_bytes() {
    let row = build(with("Title", json!("é".repeat(200)))).unwrap();

    assert_eq!(value(&row, "title"), Value::Text("é".repeat(200)));
}

#[test]
fn build_row_converts_clean_numeric_strings() {
    let mut payload = land_girls();
    payload["US Gross"] = json!(" 146083 ");
    payload["IMDB Rating"] = json!("6.1");
    payload["IMDB Votes"] = json!(1071.0);
    payload["Running Time min"] = json!("");

    let row = build(payload).unwrap();

    assert_eq!(value(&row, "us_gross"), Value::Integer(146083));
    assert_eq!(value(&row, "imdb_rating"), Value::Real(6.1));
    assert_eq!(value(&row, "imdb_votes"), Value::Integer(1071));
    assert_eq!(value(&row, "running_time_min"), Value::Null);
}

#[test]
fn build_row_stores_integral_rating_as_real() {
    let row = build(with("IMDB Rating", json!(7))).unwrap();

    assert_eq!(value(&row, "imdb_rating"), Value::Real(7.0));
}

#[test]
fn build_row_rejects_wrong_types() {
    let cases = [
        (
            "US Gross",
            json!("1,000"),
            "field \"US Gross\" is \"1,000\", but column us_gross expects a whole number within the 64-bit range",
        ),
        (
            "US Gross",
            json!(12.5),
            "field \"US Gross\" is 12.5, but column us_gross expects a whole number within the 64-bit range",
        ),
        (
            "US Gross",
            json!(1e30),
            "field \"US Gross\" is 1e+30, but column us_gross expects a whole number within the 64-bit range",
        ),
        (
            "US Gross",
            json!(u64::MAX),
            "field \"US Gross\" is 18446744073709551615, but column us_gross expects a whole number within the 64-bit range",
        ),
        (
            "IMDB Rating",
            json!("NaN"),
            "field \"IMDB Rating\" is \"NaN\", but column imdb_rating expects a finite number",
        ),
        (
            "IMDB Rating",
            json!(true),
            "field \"IMDB Rating\" is true, but column imdb_rating expects a finite number",
        ),
        (
            "Release Date",
            json!("Jun 31 1998"),
            "field \"Release Date\" is \"Jun 31 1998\", but column release_date expects a date such as \"Jun 12 1998\" or \"1998-06-12\"",
        ),
        (
            "Release Date",
            json!(19980612),
            "field \"Release Date\" is 19980612, but column release_date expects a date such as \"Jun 12 1998\" or \"1998-06-12\"",
        ),
        (
            "Title",
            json!(["The", "Land"]),
            "field \"Title\" is an array [\"The\",\"Land\"], but column title expects text or a number",
        ),
        (
            "Director",
            json!({"name": "Someone"}),
            "field \"Director\" is an object {\"name\":\"Someone\"}, but column director expects text or a number",
        ),
    ];
    for (field, input, expected) in cases {
        assert_eq!(
            build(with(field, input.clone())).unwrap_err(),
            expected,
            "{field}: {input}"
        );
    }
}

#[test]
fn build_row_reports_every_bad_field() {
    let mut payload = with("Title", Json::Null);
    payload["Release Date"] = json!("someday");

    let error = build(payload).unwrap_err();

    // Problems come in the order of the columns, which are sorted by name.
    assert_eq!(
        error,
        "field \"Release Date\" is \"someday\", but column release_date expects a date such as \
         \"Jun 12 1998\" or \"1998-06-12\"; field \"Title\" is null, but column title requires \
         a value"
    );
}

#[test]
fn build_row_ignores_unmapped_fields() {
    let row = build(with("Box Office Notes", json!("ignored"))).unwrap();

    assert_eq!(row, build(land_girls()).unwrap());
}

#[test]
fn convert_boolean_accepts_common_forms() {
    let column = Column {
        name: "released".into(),
        field: "Released".into(),
        kind: ColumnType::Boolean,
        required: false,
        max_length: None,
    };
    let cases = [
        (json!(true), Value::Integer(1)),
        (json!(false), Value::Integer(0)),
        (json!(1), Value::Integer(1)),
        (json!("FALSE"), Value::Integer(0)),
        (json!(""), Value::Null),
    ];
    for (input, expected) in cases {
        assert_eq!(convert(&column, Some(&input)), Ok(expected), "{input}");
    }
    assert!(convert(&column, Some(&json!(2))).is_err());
    assert!(convert(&column, Some(&json!("yes"))).is_err());
}

#[test]
fn parse_payload_rejects_non_objects() {
    let cases: [(&[u8], &str); 6] = [
        (b"", "the payload is empty; expected a JSON object"),
        (b" \n", "the payload is empty; expected a JSON object"),
        (
            b"{}",
            "the payload is an empty JSON object; expected the fields of a record",
        ),
        (b"[1, 2]", "the payload is an array; expected a JSON object"),
        (
            b"\"Title\"",
            "the payload is a string; expected a JSON object",
        ),
        (b"null", "the payload is null; expected a JSON object"),
    ];
    for (payload, expected) in cases {
        assert_eq!(parse_payload(payload).unwrap_err(), expected);
    }
}

#[test]
fn parse_payload_reports_invalid_json() {
    let error = parse_payload(b"{\"Title\": ").unwrap_err();

    assert!(
        error.starts_with("the payload is not valid JSON: EOF while parsing"),
        "{error}"
    );
    assert!(parse_payload(b"{\"Title\": \"\xff\"}").is_err());
}

#[test]
fn record_json_maps_columns_to_values() {
    let config = movies_config();
    let row = build(land_girls()).unwrap();

    let record = Json::Object(record_json(&config, &row.values));

    assert_eq!(record["title"], json!("The Land Girls"));
    assert_eq!(record["release_date"], json!("1998-06-12"));
    assert_eq!(record["us_gross"], json!(146083));
    assert_eq!(record["imdb_rating"], json!(6.1));
    assert_eq!(record["director"], Json::Null);
    assert_eq!(record.as_object().unwrap().len(), 16);
}

/// Every film of data/movies.json converts, except the one with a null title, and no two
/// films get the same key.
#[test]
fn build_row_handles_whole_dataset() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/movies.json");
    let movies: Vec<Json> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let config = movies_config();

    let mut keys = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for movie in &movies {
        match build_row(&config, movie.as_object().unwrap()) {
            Ok(row) => assert!(keys.insert(row.key.clone()), "duplicate key {}", row.key),
            Err(error) => errors.push(error),
        }
    }

    assert_eq!(movies.len(), 3201);
    assert_eq!(
        errors,
        ["field \"Title\" is null, but column title requires a value"]
    );
    assert_eq!(keys.len(), 3200);
    assert!(
        keys.contains("Ben-Hur (1959-11-18)"),
        "remakes keep distinct keys"
    );
    assert!(keys.iter().all(|key| key.chars().count() <= 255));
}

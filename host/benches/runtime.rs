//! Per-message overhead of the wasm runtime: one call of the no-op guest (what the host pays
//! to hand a message to a component), calls of a guest that returns at once on a reused
//! instance and on a fresh instance per message, plus a db-writer call on SQLite.
//!
//! Run with `scripts/build-plugins && cargo bench -p magnetar --bench runtime`.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use magnetar::harness::Harness;

fn plugin(file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("wasm32-wasip2/release").join(file);
    assert!(path.exists(), "{} is missing; build the plugins with `scripts/build-plugins`", path.display());
    path
}

fn runtime_overhead(c: &mut Criterion) {
    let tokio = tokio::runtime::Runtime::new().expect("tokio runtime");
    let noop = tokio.block_on(async { Harness::builder(plugin("noop.wasm")).build().await.expect("load no-op guest") });
    let movie_sized = Harness::message(vec![b'x'; 400]);
    c.bench_function("call_noop_reused_instance", |b| {
        b.to_async(&tokio).iter(|| async {
            noop.stage().handle(&movie_sized).await.expect("ok");
        })
    });

    let hostile = tokio.block_on(async {
        Harness::builder(plugin("hostile.wasm")).grants(["publish"]).build().await.expect("load hostile guest")
    });
    let message = Harness::message(b"ok".to_vec());

    c.bench_function("call_reused_instance", |b| {
        b.to_async(&tokio).iter(|| async {
            hostile.stage().handle(&message).await.expect("ok");
        })
    });

    c.bench_function("call_fresh_instance", |b| {
        b.to_async(&tokio).iter(|| async {
            hostile.stage().discard_idle();
            hostile.stage().handle(&message).await.expect("ok");
        })
    });

    let config = r#"{"table": "movies", "key": {"column": "id", "from": ["title", "release_date"]},
        "columns": {"title": {"field": "Title", "type": "text", "required": true, "max_length": 200},
                    "release_date": {"field": "Release Date", "type": "date", "required": true},
                    "us_gross": {"field": "US Gross", "type": "integer"}}}"#;
    let db_writer = tokio.block_on(async {
        Harness::builder(plugin("db_writer.wasm"))
            .config(serde_json::from_str(config).unwrap())
            .migrations(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .build()
            .await
            .expect("load db-writer")
    });
    // The same record each time: after the first insert, every call is the idempotent repeat
    // (an INSERT that hits the key, a SELECT, a compare and a publish).
    let movie = Harness::message(br#"{"Title": "Heat", "Release Date": "Dec 15 1995", "US Gross": 67436818}"#.to_vec());
    c.bench_function("db_writer_repeat_sqlite", |b| {
        b.to_async(&tokio).iter(|| async {
            db_writer.stage().handle(&movie).await.expect("stored");
        })
    });
}

criterion_group!(benches, runtime_overhead);
criterion_main!(benches);

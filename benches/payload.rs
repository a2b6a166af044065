//! Reading webhook bodies: `payload::parse` on the bodies Localtonet sends (one event) and on
//! arrays (a sender that batches, or a pre-load).
//!
//! `cargo bench --bench payload`

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use localtonet_exporter::payload::{self, Options};

/// Localtonet's documented sample: a token event, so the id is fingerprinted.
const TOKEN_EVENT: &str = concat!(
    r#"{"Id": "9xknivVmUWwu1dqBOHRybM78", "ActionDate": "2024-04-29T12:35:17.154580", "#,
    r#""Type": "Token", "Status": "Disconnected"}"#
);

fn options() -> Options {
    Options::default()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-04-29T13:00:00Z")
        .expect("a valid date")
        .with_timezone(&Utc)
}

fn tunnel_event(i: usize) -> String {
    format!(
        concat!(
            r#"{{"Id":"tunnel-{i:06}","ActionDate":"2024-04-29T12:35:17.{micros:06}","#,
            r#""Type":"Tunnel","Status":"{status}"}}"#
        ),
        i = i,
        micros = i % 1_000_000,
        status = if i % 2 == 0 {
            "Connected"
        } else {
            "Disconnected"
        },
    )
}

fn array(n: usize) -> String {
    let events: Vec<String> = (0..n).map(tunnel_event).collect();
    format!("[{}]", events.join(","))
}

fn single_events(c: &mut Criterion) {
    let options = options();
    let now = now();
    let tunnel = tunnel_event(7);
    let mut group = c.benchmark_group("parse/one event");
    group.throughput(Throughput::Elements(1));
    for (name, body) in [("token", TOKEN_EVENT), ("tunnel", tunnel.as_str())] {
        assert!(
            payload::parse(body.as_bytes(), &options, now).is_ok(),
            "{name} is valid"
        );
        group.bench_function(name, |b| {
            b.iter(|| payload::parse(black_box(body.as_bytes()), &options, now))
        });
    }
    group.finish();
}

fn arrays(c: &mut Criterion) {
    let options = options();
    let now = now();
    let mut group = c.benchmark_group("parse/array of tunnel events");
    for n in [10, 1_000] {
        let body = array(n);
        assert!(
            payload::parse(body.as_bytes(), &options, now).is_ok(),
            "array is valid"
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| payload::parse(black_box(body.as_bytes()), &options, now))
        });
    }
    group.finish();
}

criterion_group!(benches, single_events, arrays);
criterion_main!(benches);

//! Bounded fuzzing of the webhook payload parser and of "accepted events, then scrape".
//!
//! Inputs come from three sources: arbitrary bytes, the committed corpus in `tests/fuzz/corpus`
//! mutated (bytes flipped, inserted, deleted, spliced, hostile strings put in), and generated
//! JSON that is nearly a valid event. For every input:
//! - parsing never panics;
//! - accepted events satisfy the documented id, date and order rules;
//! - applying them and scraping gives well-formed text in which every label value reads back
//!   exactly and every value is what the state rules allow.
//!
//! At the end the accumulated scrape of everything accepted goes through `promtool check
//! metrics`. The run lasts `FUZZ_SECONDS` (default 10; the test script sets 60). A failing input
//! is shrunk by proptest, printed, and written under `target/fuzz-failures/`; add it to the
//! corpus once fixed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use localtonet_exporter::action_date::Zone;
use localtonet_exporter::event::{Event, Kind};
use localtonet_exporter::ingest::{self, Ingest};
use localtonet_exporter::metrics::Metrics;
use localtonet_exporter::names::Names;
use localtonet_exporter::payload::{self, EARLIEST_ACTION_DATE, Options};
use localtonet_exporter::store::MemoryStore;
use localtonet_exporter::{exposition, fingerprint};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn options() -> Options {
    Options {
        zone: "Europe/Istanbul".parse::<Zone>().expect("zone"),
        ..Options::default()
    }
}

fn config() -> ingest::Config {
    ingest::Config {
        series_max: 1_000_000,
        expose_token_ids: false,
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("corpus folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

const HOSTILE: &[&str] = &[
    "\"",
    "\\",
    "\\n",
    "\\u0000",
    "\n",
    "null",
    "1e999",
    "-0",
    "[]",
    "{}",
    "\u{202e}",
    "ÿ",
    "\u{feff}",
    "Token",
    "tunnel",
    "CONNECTED",
    "disconnected",
    "Z",
    "+03:00",
    "-23:59",
    ".123456789",
    "2024-04-29T12:35:17",
    "9999-12-31T23:59:59",
    "0000-01-01T00:00:00",
    "\"Id\":",
    "\"id\":",
];

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Hostile(usize, usize),
    Splice(usize, usize, usize),
}

fn mutate(corpus: &[Vec<u8>], base: usize, mutations: &[Mutation]) -> Vec<u8> {
    let mut data = corpus[base % corpus.len()].clone();
    for mutation in mutations {
        let at = |i: usize| {
            if data.is_empty() {
                0
            } else {
                i % (data.len() + 1)
            }
        };
        match *mutation {
            Mutation::Flip(i, bits) if !data.is_empty() => {
                let i = i % data.len();
                data[i] ^= bits;
            }
            Mutation::Insert(i, byte) => data.insert(at(i), byte),
            Mutation::Delete(i, n) => {
                let start = at(i);
                let end = (start + n % 16).min(data.len());
                data.drain(start..end);
            }
            Mutation::Hostile(i, which) => {
                let start = at(i);
                data.splice(start..start, HOSTILE[which % HOSTILE.len()].bytes());
            }
            Mutation::Splice(i, other, from) => {
                let other = &corpus[other % corpus.len()];
                let start = at(i);
                let from = if other.is_empty() {
                    0
                } else {
                    from % other.len()
                };
                data.splice(start..start, other[from..].iter().copied());
            }
            Mutation::Flip(..) => {}
        }
    }
    data
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, w)| Mutation::Hostile(i, w)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(i, o, f)| Mutation::Splice(i, o, f)),
    ]
}

/// A JSON value that is nearly an event: right keys in any case, values that are often valid.
fn near_event() -> impl Strategy<Value = serde_json::Value> {
    let key = |name: &'static str| {
        prop_oneof![
            Just(name.to_string()),
            Just(name.to_lowercase()),
            Just(name.to_uppercase())
        ]
    };
    let text = prop_oneof![
        6 => "[A-Za-z0-9_.:~+=/@-]{1,24}",
        1 => "\\PC{0,12}",
        1 => "[\"\\\\\n\u{0}-\u{1f} ]{1,4}",
        1 => Just(String::new()),
    ];
    let date = prop_oneof![
        8 => (
            2000i32..2026,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..60,
            "(\\.[0-9]{1,10})?",
            "(Z|[+-][0-9]{2}:?[0-9]{2}|)"
        )
            .prop_map(|(y, mo, d, h, mi, s, f, z)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{f}{z}")
            }),
        1 => "\\PC{0,30}",
    ];
    let value = |s: BoxedStrategy<String>| {
        prop_oneof![
            20 => s.prop_map(serde_json::Value::from),
            1 => any::<i64>().prop_map(serde_json::Value::from),
            1 => Just(serde_json::Value::Null),
            1 => Just(serde_json::json!({"nested": [1, "x"]})),
        ]
    };
    let kind = prop_oneof![8 => "(?i)token|tunnel", 1 => "\\PC{0,8}"].boxed();
    let status = prop_oneof![8 => "(?i)connected|disconnected", 1 => "\\PC{0,8}"].boxed();
    (
        (key("Id"), value(text.boxed())),
        (key("ActionDate"), value(date.boxed())),
        (key("Type"), value(kind)),
        (key("Status"), value(status)),
        proptest::option::of(("[a-zA-Z]{1,8}", any::<i32>())),
        any::<u8>(),
    )
        .prop_map(|(id, date, kind, status, extra, drop)| {
            let mut object = serde_json::Map::new();
            for (i, (k, v)) in [id, date, kind, status].into_iter().enumerate() {
                if drop % 32 != i as u8 {
                    object.insert(k, v);
                }
            }
            if let Some((k, v)) = extra {
                object.insert(k, v.into());
            }
            serde_json::Value::Object(object)
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    let corpus = Arc::new(corpus());
    let mutated = {
        let corpus = Arc::clone(&corpus);
        (any::<usize>(), proptest::collection::vec(mutation(), 0..6))
            .prop_map(move |(base, ms)| mutate(&corpus, base, &ms))
    };
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        4 => mutated,
        4 => near_event().prop_map(|v| v.to_string().into_bytes()),
        2 => proptest::collection::vec(near_event(), 0..6)
            .prop_map(|v| serde_json::Value::Array(v).to_string().into_bytes()),
    ]
}

/// Reads one sample line of the text format strictly: `name{l="v",...} value`, label values
/// unescaped. Returns `None` for anything malformed.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            let eq = inner.find('=')?;
            let label = &inner[..eq];
            let mut chars = inner[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    (i, '"') => break i,
                    (_, '\n') => return None,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(label.to_string(), value);
            inner = &inner[eq + 2 + end + 1..];
            if let Some(after) = inner.strip_prefix(',') {
                inner = after;
            } else {
                rest = inner.strip_prefix('}')?;
                break;
            }
        }
    }
    let value: f64 = rest.strip_prefix(' ')?.parse().ok()?;
    Some((name.to_string(), labels, value))
}

/// Checks the invariants for one input; `accumulated` gathers everything accepted.
fn check(
    runtime: &tokio::runtime::Runtime,
    accumulated: &Ingest,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let options = options();
    let Ok(events) = payload::parse(body, &options, now) else {
        return Ok(());
    };

    let newest_allowed = (now + chrono::Duration::seconds(300))
        .timestamp_nanos_opt()
        .unwrap_or(0);
    for pair in events.windows(2) {
        prop_assert!(pair[0].at <= pair[1].at, "events not sorted");
    }
    for event in &events {
        prop_assert!(
            event.at >= EARLIEST_ACTION_DATE * 1_000_000_000 && event.at <= newest_allowed
        );
        match event.key.kind {
            Kind::Tunnel => prop_assert!(payload::check_label_id(&event.key.id).is_ok()),
            Kind::Token => prop_assert!(fingerprint::looks_like(&event.key.id)),
        }
    }

    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let ingest =
        Ingest::start(Box::new(MemoryStore), Names::default(), config(), metrics).expect("ingest");
    let outcomes = runtime.block_on(ingest.apply(events.clone(), Some("fuzz".into())));
    prop_assert!(outcomes.is_ok(), "{outcomes:?}");
    let _ = runtime.block_on(accumulated.apply(events.clone(), None));

    let mut text = Vec::new();
    ingest.read().render(&mut text);
    runtime.block_on(ingest.close());
    let text = String::from_utf8(text).expect("scrape is UTF-8");
    check_scrape(&text, &events)
}

fn check_scrape(text: &str, events: &[Event]) -> Result<(), TestCaseError> {
    let mut seen: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let parsed = parse_sample(line);
        prop_assert!(parsed.is_some(), "malformed line {line:?}");
        let Some((name, labels, value)) = parsed else {
            continue;
        };
        let key = (labels["type"].clone(), labels["id"].clone());
        prop_assert_eq!(labels.get("group").map(String::as_str), Some("fuzz"));
        seen.entry(key).or_default().insert(name, value);
    }
    for event in events {
        let key = (
            event.key.kind.as_str().to_string(),
            event.key.id.to_string(),
        );
        let series = seen.get(&key);
        prop_assert!(series.is_some(), "no series for {key:?} in\n{text}");
        let Some(series) = series else { continue };
        prop_assert_eq!(series.len(), 4);
        let count = events.iter().filter(|e| e.key == event.key).count() as f64;
        let (c, d) = (
            series["localtonet_connects_total"],
            series["localtonet_disconnects_total"],
        );
        prop_assert!(c >= 0.0 && d >= 0.0 && c + d >= 1.0 && c + d <= count);
        prop_assert!([0.0, 1.0].contains(&series["localtonet_connected"]));
        let since = series["localtonet_last_change_timestamp_seconds"];
        let matches_an_event = events
            .iter()
            .any(|e| e.key == event.key && exposition::seconds(e.at) == since);
        prop_assert!(
            matches_an_event,
            "last change {since} is no event's ActionDate"
        );
    }
    Ok(())
}

#[test]
fn payload_parser_and_scrape_hold_their_invariants_on_hostile_input() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let accumulated =
        Ingest::start(Box::new(MemoryStore), Names::default(), config(), metrics).expect("ingest");
    let now = Utc::now();
    let strategy = input();

    let mut cases = 0u64;
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        let config = Config {
            cases: 256,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(rounds ^ now.timestamp() as u64),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |body| check(&runtime, &accumulated, &body, now));
        if let Err(failure) = result {
            report_failure(&failure.to_string());
            panic!("fuzzing found a failure: {failure}");
        }
        cases += 256;
        rounds += 1;
    }

    for body in corpus() {
        check(&runtime, &accumulated, &body, now).expect("corpus entry holds");
    }
    let mut text = Vec::new();
    accumulated.read().render(&mut text);
    let text = String::from_utf8(text).expect("utf-8");
    let problems = common::promtool_check_metrics(&text);
    assert_eq!(
        problems, "",
        "promtool check metrics on the accumulated scrape"
    );
    println!(
        "fuzzed {cases} inputs in {seconds}s; {} ids accepted",
        accumulated.read().len()
    );
}

fn report_failure(failure: &str) {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&folder);
    let path = folder.join(format!("failure-{}.txt", Utc::now().timestamp_millis()));
    let _ = std::fs::write(&path, failure);
    eprintln!("failing input written to {}", path.display());
}

#[test]
fn strict_sample_reader_reads_escapes_and_refuses_broken_lines() {
    let (name, labels, value) = parse_sample(r#"m{a="x\"y\\z\nw",b=""} 1.5"#).expect("valid line");
    assert_eq!((name.as_str(), value), ("m", 1.5));
    assert_eq!(labels["a"], "x\"y\\z\nw");
    assert_eq!(labels["b"], "");
    for bad in [
        r#"m{a="x} 1"#,
        r#"m{a="\q"} 1"#,
        "m{a=\"x\ny\"} 1",
        "m 1 2 3",
        "{a=\"b\"} 1",
    ] {
        assert!(parse_sample(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn label_values_with_any_text_read_back_exactly() {
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    runner
        .run(&("\\PC{0,40}", "[\\PC\n]{0,40}"), |(id, name)| {
            let key = localtonet_exporter::event::Key::new(Kind::Tunnel, id.clone());
            let line = format!(
                "m{{{}}} 1",
                exposition::label_set(&key, None, Some(&name), None)
            );
            let (_, labels, _) = parse_sample(&line).expect("well-formed");
            prop_assert_eq!(&labels["id"], &id);
            prop_assert_eq!(&labels["name"], &name);
            Ok(())
        })
        .expect("escaping round-trips");
}

//! Durable state: an event answered 2xx survives a crash; series have a lifecycle.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::{Exporter, Scrape, agent, event, try_request, write_file};

/// What a sender knows about one event it sent.
#[derive(Clone, Debug)]
struct Sent {
    id: String,
    connected: bool,
    at_ms: i64,
}

fn date(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .expect("in range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn labels(id: &str) -> String {
    format!(r#"type="tunnel",id="{id}""#)
}

#[test]
fn every_event_answered_2xx_survives_kill_9_and_none_is_counted_twice() {
    const THREADS: usize = 8;
    const IDS_PER_THREAD: usize = 25;
    const KILL_AFTER: usize = 4000;

    let exporter = Exporter::start(&["--web.rate-limit=0"]);
    let base_ms = Utc::now().timestamp_millis() - 86_400_000;
    let acked: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let unknown: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let acked_count = Arc::new(AtomicUsize::new(0));
    let url = exporter.url("/webhook");

    let senders: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (acked, unknown, acked_count, url) = (
                acked.clone(),
                unknown.clone(),
                acked_count.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                let agent = agent();
                let mut sent_per_id = [0usize; IDS_PER_THREAD];
                for n in 0.. {
                    let k = n % IDS_PER_THREAD;
                    let sent = Sent {
                        id: format!("t{thread}-{k}"),
                        connected: sent_per_id[k] % 2 == 0,
                        at_ms: base_ms + n as i64,
                    };
                    sent_per_id[k] += 1;
                    let status = if sent.connected {
                        "Connected"
                    } else {
                        "Disconnected"
                    };
                    let body = event("Tunnel", &sent.id, status, &date(sent.at_ms));
                    let answer = try_request(&agent, "POST", &url, Some(body.as_bytes()), &[]);
                    match answer {
                        Ok(answer) if answer.status == 200 => {
                            acked.lock().expect("acked").push(sent);
                            acked_count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(answer) => panic!("refused before the crash: {answer:?}"),
                        Err(_) => {
                            // The connection broke: the exporter was killed mid-request.
                            unknown.lock().expect("unknown").push(sent);
                            return;
                        }
                    }
                }
            })
        })
        .collect();

    while acked_count.load(Ordering::Relaxed) < KILL_AFTER {
        std::thread::sleep(Duration::from_millis(5));
    }
    let exporter = exporter.crash_and_restart();
    for sender in senders {
        sender.join().expect("sender thread");
    }

    let acked = acked.lock().expect("acked").clone();
    let unknown = unknown.lock().expect("unknown").clone();
    assert!(acked.len() >= KILL_AFTER);
    let scrape = exporter.scrape();
    check_every_acked_event_is_reflected(&scrape, &acked, &unknown);
}

/// For every id: counters hold every acknowledged event, plus at most the one event whose
/// answer was lost in the crash; the gauge and last change follow the newest applied event.
fn check_every_acked_event_is_reflected(scrape: &Scrape, acked: &[Sent], unknown: &[Sent]) {
    let mut by_id: HashMap<&str, Vec<&Sent>> = HashMap::new();
    for sent in acked {
        by_id.entry(&sent.id).or_default().push(sent);
    }
    let mut problems = Vec::new();
    for (id, events) in &by_id {
        let labels = labels(id);
        let value = |name: &str| scrape.value(name, &labels).unwrap_or(f64::NAN);
        let (connects, disconnects) = (
            value("localtonet_connects_total"),
            value("localtonet_disconnects_total"),
        );
        let acked_connects = events.iter().filter(|e| e.connected).count() as f64;
        let acked_disconnects = events.len() as f64 - acked_connects;
        let maybe = unknown.iter().find(|e| e.id == *id);
        let (extra_c, extra_d) = match maybe {
            Some(e) if e.connected => (1.0, 0.0),
            Some(_) => (0.0, 1.0),
            None => (0.0, 0.0),
        };
        if !(acked_connects..=acked_connects + extra_c).contains(&connects)
            || !(acked_disconnects..=acked_disconnects + extra_d).contains(&disconnects)
        {
            problems.push(format!(
                "{id}: counters {connects}/{disconnects}, acknowledged {acked_connects}/\
                 {acked_disconnects}, in flight {maybe:?}"
            ));
            continue;
        }
        let newest_acked = events.iter().max_by_key(|e| e.at_ms).expect("one event");
        let lost_applied = connects + disconnects > acked_connects + acked_disconnects;
        let newest = match maybe {
            Some(e) if lost_applied => e,
            _ => newest_acked,
        };
        let gauge = value("localtonet_connected");
        let since = value("localtonet_last_change_timestamp_seconds");
        if gauge != f64::from(u8::from(newest.connected))
            || (since - newest.at_ms as f64 / 1000.0).abs() > 1e-3
        {
            problems.push(format!(
                "{id}: gauge {gauge} since {since}, newest {newest:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} ids wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn counters(scrape: &Scrape) -> HashMap<String, f64> {
    scrape
        .0
        .lines()
        .filter(|l| {
            l.starts_with("localtonet_disconnects_total{")
                || l.starts_with("localtonet_connects_total{")
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn counters_and_gauges_continue_across_graceful_and_kill_9_restarts() {
    let exporter = Exporter::start(&[]);
    let now = Utc::now();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        for step in 0..3 {
            let status = if step % 2 == 0 {
                "Disconnected"
            } else {
                "Connected"
            };
            let at = now - chrono::Duration::minutes(60 - (i * 10 + step) as i64);
            exporter.send(&event("Tunnel", id, status, &at.to_rfc3339()));
        }
    }
    let before = exporter.scrape();
    let before_counters = counters(&before);
    assert_eq!(before_counters.len(), 6);

    let exporter = exporter.restart();
    let after_graceful = exporter.scrape();
    assert_eq!(
        counters(&after_graceful),
        before_counters,
        "graceful restart"
    );
    assert_eq!(
        after_graceful.value("localtonet_connected", &labels("a")),
        Some(0.0)
    );

    let exporter = exporter.crash_and_restart();
    let after_crash = exporter.scrape();
    assert_eq!(counters(&after_crash), before_counters, "kill -9");
    for id in ["a", "b", "c"] {
        let since = |s: &Scrape| s.value("localtonet_last_change_timestamp_seconds", &labels(id));
        assert_eq!(since(&after_crash), since(&before), "{id} last change");
    }

    exporter.send(&event("Tunnel", "a", "Connected", &now.to_rfc3339()));
    let later = exporter.scrape();
    assert_eq!(
        later.value("localtonet_connects_total", &labels("a")),
        Some(2.0)
    );
    assert_eq!(
        later.value("localtonet_disconnects_total", &labels("a")),
        Some(2.0)
    );
}

#[test]
fn in_memory_mode_forgets_everything_on_restart() {
    let exporter = Exporter::start(&["--storage.in-memory"]);
    exporter.send(&event("Tunnel", "a", "Connected", &Utc::now().to_rfc3339()));
    let exporter = exporter.restart();
    assert!(!exporter.scrape().contains("localtonet_connected{"));
    assert!(
        !exporter.dir.path().join("localtonet-exporter.db").exists(),
        "nothing written"
    );
}

#[test]
fn corrupt_or_unusable_store_stops_start_with_the_file_named_and_leaves_it_alone() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let garbage = b"SQLite format 2\0 not really, a damaged header and some bytes".repeat(64);
    let path = dir.path().join("state.db");
    std::fs::write(&path, &garbage).expect("write");
    let flag = format!("--storage.path={}", path.display());

    let logs = Exporter::try_start_in(Arc::clone(&dir), &[&flag])
        .map(|_| ())
        .expect_err("refused");
    assert!(
        logs.contains(&path.display().to_string()),
        "file named:\n{logs}"
    );
    assert!(
        logs.contains("not a SQLite database"),
        "reason given:\n{logs}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        garbage,
        "file left as it was"
    );

    let folder = format!("--storage.path={}", dir.path().display());
    let logs = Exporter::try_start_in(Arc::clone(&dir), &[&folder])
        .map(|_| ())
        .expect_err("dir");
    assert!(logs.contains("not a regular file"), "{logs}");
}

#[test]
fn corrupt_store_exits_non_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_file(dir.path(), "state.db", "definitely not a database\n");
    let output = std::process::Command::new(common::binary())
        .args([
            "--web.listen-address=127.0.0.1:0",
            &format!("--storage.path={}", path.display()),
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or("")
            .contains("cannot use store"),
        "{stderr}"
    );
}

#[test]
fn a_second_exporter_on_the_same_store_is_refused() {
    let first = Exporter::start(&[]);
    let logs = Exporter::try_start_in(Arc::clone(&first.dir), &[])
        .map(|_| ())
        .expect_err("locked");
    assert!(logs.contains("locked by another process"), "{logs}");
    assert_eq!(
        first.get("/-/ready").status,
        200,
        "the first one keeps running"
    );
}

#[test]
fn series_cap_refuses_new_ids_with_507_counts_them_and_warns_at_most_once_a_minute() {
    let exporter = Exporter::start(&["--series.max=2"]);
    let at = Utc::now().to_rfc3339();
    exporter.send(&event("Tunnel", "a", "Connected", &at));
    exporter.send(&event("Tunnel", "b", "Connected", &at));
    for _ in 0..3 {
        let refused = exporter.post("/webhook", &event("Tunnel", "c", "Connected", &at));
        assert_eq!(refused.status, 507, "{}", refused.body);
        assert!(
            refused.body.contains("--series.max is 2"),
            "{}",
            refused.body
        );
    }
    // Known ids still get through.
    exporter.send(&event("Tunnel", "a", "Disconnected", &at));

    let scrape = exporter.scrape();
    assert!(!scrape.contains(r#"id="c""#));
    let limited = r#"outcome="series_limit""#;
    assert_eq!(
        scrape.value("localtonet_exporter_webhook_requests_total", limited),
        Some(3.0)
    );
    assert_eq!(scrape.value("localtonet_exporter_ids_max", ""), Some(2.0));
    assert_eq!(
        exporter.logs().matches("series limit reached").count(),
        1,
        "{}",
        exporter.logs()
    );
}

#[test]
fn lowering_series_max_below_the_stored_ids_still_updates_known_ids() {
    let exporter = Exporter::start(&[]);
    let at = Utc::now().to_rfc3339();
    for id in ["a", "b", "c"] {
        exporter.send(&event("Tunnel", id, "Connected", &at));
    }
    let dir = Arc::clone(&exporter.dir);
    drop(exporter);
    let exporter = Exporter::start_in(dir, &["--series.max=2"]);
    assert!(
        exporter.logs().contains("more ids than --series.max"),
        "{}",
        exporter.logs()
    );
    exporter.send(&event("Tunnel", "a", "Disconnected", &at));
    assert_eq!(
        exporter
            .scrape()
            .value("localtonet_connected", &labels("a")),
        Some(0.0)
    );
    let refused = exporter.post("/webhook", &event("Tunnel", "d", "Connected", &at));
    assert_eq!(refused.status, 507);
}

#[test]
fn ids_silent_longer_than_expire_after_are_forgotten_durably() {
    let exporter = Exporter::start(&["--series.expire-after=2s"]);
    let old = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    exporter.send(&event("Tunnel", "old", "Disconnected", &old));
    assert!(exporter.scrape().contains(r#"id="old""#));

    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !exporter.scrape().contains(r#"id="old""#)
    });
    assert!(gone, "not forgotten within 10s");
    let exporter = exporter.crash_and_restart();
    assert!(
        !exporter.scrape().contains(r#"id="old""#),
        "forgotten for good"
    );

    exporter.send(&event(
        "Tunnel",
        "fresh",
        "Connected",
        &Utc::now().to_rfc3339(),
    ));
    assert!(exporter.scrape().contains(r#"id="fresh""#));
}

#[test]
fn admin_api_lists_and_deletes_ids_durably() {
    let exporter = Exporter::start(&["--web.enable-admin-api"]);
    let at = Utc::now().to_rfc3339();
    exporter.send(&event("Tunnel", "retired", "Disconnected", &at));
    exporter.send(&event("Tunnel", "kept", "Connected", &at));
    exporter.send(&common::SAMPLE.replace("2024-04-29T12:35:17.154580", &at[..19]));

    let list = exporter.get("/api/v1/admin/ids").json();
    let ids: Vec<&str> = list["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, [common::SAMPLE_FINGERPRINT, "kept", "retired"]);
    assert_eq!(list["ids"][2]["status"], "disconnected");

    assert_eq!(
        exporter.delete("/api/v1/admin/ids/tunnel/retired").status,
        200
    );
    assert_eq!(
        exporter.delete("/api/v1/admin/ids/tunnel/retired").status,
        404
    );
    assert_eq!(
        exporter
            .delete("/api/v1/admin/ids/token/3b8f0e6747ce707b")
            .status,
        200
    );
    assert_eq!(exporter.delete("/api/v1/admin/ids/planet/x").status, 400);
    let bad_utf8 = exporter.delete("/api/v1/admin/ids/tunnel/%ff");
    assert_eq!(bad_utf8.status, 400);
    assert_eq!(bad_utf8.json()["status"], "refused");
    let exporter = exporter.crash_and_restart();
    let scrape = exporter.scrape();
    assert!(!scrape.contains(r#"id="retired""#) && !scrape.contains("3b8f0e6747ce707b"));
    assert!(scrape.contains(r#"id="kept""#));
}

#[test]
fn admin_api_is_off_unless_enabled() {
    let exporter = Exporter::start(&[]);
    assert_eq!(exporter.get("/api/v1/admin/ids").status, 404);
    assert_eq!(exporter.delete("/api/v1/admin/ids/tunnel/x").status, 404);
}

#[test]
fn named_ids_that_never_reported_are_listed_without_a_connected_value() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let names = write_file(
        dir.path(),
        "names.toml",
        "[tunnels]\n\"office\" = \"Office SSH\"\n\"cam\" = \"Camera\"\n\n[tokens]\n\
         \"9xknivVmUWwu1dqBOHRybM78\" = \"Home lab\"\n",
    );
    let flag = format!("--names.file={}", names.display());
    let exporter = Exporter::start_in(dir, &[&flag, "--web.enable-admin-api"]);

    let scrape = exporter.scrape();
    for labels in [
        r#"type="token",id="3b8f0e6747ce707b",name="Home lab""#,
        r#"type="tunnel",id="cam",name="Camera""#,
        r#"type="tunnel",id="office",name="Office SSH""#,
    ] {
        assert_eq!(
            scrape.value("localtonet_unreported", labels),
            Some(1.0),
            "{labels}"
        );
    }
    assert!(!scrape.contains("localtonet_connected{"), "no faked status");

    exporter.send(&event(
        "Tunnel",
        "office",
        "Connected",
        &Utc::now().to_rfc3339(),
    ));
    let scrape = exporter.scrape();
    let office = r#"type="tunnel",id="office",name="Office SSH""#;
    assert_eq!(scrape.value("localtonet_unreported", office), None);
    assert_eq!(scrape.value("localtonet_connected", office), Some(1.0));
    let unreported = exporter.get("/api/v1/admin/ids").json()["unreported"].clone();
    assert_eq!(unreported.as_array().map(Vec::len), Some(2));
}

#[test]
fn state_is_loaded_before_the_listener_opens() {
    let exporter = Exporter::start(&["--web.rate-limit=0"]);
    let at = Utc::now() - chrono::Duration::minutes(5);
    let batch: Vec<String> = (0..2000)
        .map(|i| event("Tunnel", &format!("id-{i}"), "Connected", &at.to_rfc3339()))
        .collect();
    for chunk in batch.chunks(500) {
        exporter.send(&format!("[{}]", chunk.join(",")));
    }
    let exporter = exporter.restart();
    // The harness returns as soon as the exporter logs that it listens: the first scrape and
    // readiness must already see every id.
    assert_eq!(exporter.get("/-/ready").status, 200);
    assert_eq!(
        exporter
            .scrape()
            .value("localtonet_exporter_ids", r#"type="tunnel""#),
        Some(2000.0)
    );
}

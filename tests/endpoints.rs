//! The read side over HTTP: landing page, health, readiness, scrapes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use common::{Exporter, agent, event, promtool_check_metrics, request};

#[test]
fn landing_page_shows_the_version_and_links() {
    let exporter = Exporter::start(&["--web.telemetry-path=/prom", "--web.enable-admin-api"]);
    let page = exporter.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    assert!(page.body.contains(env!("CARGO_PKG_VERSION")));
    for link in [
        "href=\"/prom\"",
        "href=\"/-/healthy\"",
        "href=\"/-/ready\"",
        "/api/v1/admin/ids",
    ] {
        assert!(page.body.contains(link), "missing {link}: {}", page.body);
    }
    assert_eq!(exporter.get("/prom").status, 200);
    assert_eq!(exporter.get("/metrics").status, 404);
}

#[test]
fn health_and_readiness_answer_while_running() {
    let exporter = Exporter::start(&[]);
    assert_eq!(exporter.get("/-/healthy").status, 200);
    assert_eq!(exporter.get("/-/ready").status, 200);
    assert_eq!(exporter.get("/no/such/page").status, 404);
    assert_eq!(
        exporter.get("/webhook").status,
        405,
        "the webhook takes POST only"
    );
}

#[test]
fn scrape_is_valid_exposition_with_help_on_every_metric() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let names = common::write_file(dir.path(), "names.toml", "[tunnels]\nnever = \"Never\"\n");
    let exporter = Exporter::start_in(dir, &[&format!("--names.file={}", names.display())]);
    exporter.send(common::SAMPLE);
    exporter.send(&event(
        "Tunnel",
        "t1",
        "Connected",
        &Utc::now().to_rfc3339(),
    ));
    assert_eq!(exporter.post("/webhook", "{").status, 400);

    let answer = exporter.get("/metrics");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = answer.body;
    assert_eq!(promtool_check_metrics(&text), "", "promtool check metrics");
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap_or("");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    for expected in [
        "localtonet_unreported{",
        "localtonet_exporter_build_info{",
        "process_resident_memory_bytes ",
        "localtonet_exporter_store_size_bytes ",
    ] {
        assert!(text.contains(expected), "missing {expected}");
    }
}

#[test]
fn scrapes_are_gzipped_only_when_asked() {
    use std::io::{Read, Write};
    let exporter = Exporter::start(&[]);
    let head = |accept: &str| {
        let mut stream = std::net::TcpStream::connect(&exporter.address).expect("connect");
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        String::from_utf8_lossy(&answer[..end]).to_lowercase()
    };
    assert!(head("Accept-Encoding: gzip\r\n").contains("content-encoding: gzip"));
    assert!(!head("").contains("content-encoding"));
}

#[test]
fn scrapes_during_sustained_ingest_answer_and_counters_never_go_down() {
    let exporter = Exporter::start(&["--web.rate-limit=0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let url = exporter.url("/webhook");
    let base = Utc::now() - chrono::Duration::hours(1);
    let senders: Vec<_> = (0..4)
        .map(|thread| {
            let (stop, url) = (Arc::clone(&stop), url.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let status = if n % 2 == 0 {
                        "Connected"
                    } else {
                        "Disconnected"
                    };
                    let at = base + chrono::Duration::milliseconds(n);
                    let body = event(
                        "Tunnel",
                        &format!("s{thread}-{}", n % 50),
                        status,
                        &at.to_rfc3339(),
                    );
                    let answer = request(&agent, "POST", &url, Some(body.as_bytes()), &[]);
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    n += 1;
                }
                n
            })
        })
        .collect();

    let mut previous: HashMap<String, f64> = HashMap::new();
    for _ in 0..30 {
        let scrape = exporter.scrape();
        assert_eq!(promtool_check_metrics(&scrape.0), "");
        for line in scrape
            .0
            .lines()
            .filter(|l| l.starts_with("localtonet_") && l.contains("s_total{"))
        {
            let (series, value) = line.rsplit_once(' ').expect("sample");
            let value: f64 = value.parse().expect("number");
            let before = previous.insert(series.to_string(), value).unwrap_or(0.0);
            assert!(value >= before, "{series} went from {before} to {value}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent: i64 = senders.into_iter().map(|s| s.join().expect("sender")).sum();
    assert!(sent > 100, "only {sent} events sent during the scrapes");
    assert!(
        previous.len() >= 100,
        "counters of most ids seen: {}",
        previous.len()
    );
}

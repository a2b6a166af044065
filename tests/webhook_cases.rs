//! The webhook inputs of tests/fixtures/webhooks, one test per kind, against the real binary.

mod common;

use common::{Exporter, SAMPLE_FINGERPRINT, SAMPLE_TOKEN, promtool_check_metrics, read_fixture};

const TOKEN_LABELS: &str = r#"type="token",id="3b8f0e6747ce707b""#;

fn tunnel(id: &str) -> String {
    format!(r#"type="tunnel",id="{id}""#)
}

#[test]
fn case_01_documented_sample_is_read_as_utc_and_shown_by_fingerprint() {
    let exporter = Exporter::start(&[]);
    let answer = exporter.send(&read_fixture("webhooks/01-documented-sample.json"));
    assert_eq!(answer["events"][0]["id"], SAMPLE_FINGERPRINT);
    assert_eq!(answer["events"][0]["outcome"], "applied");

    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value("localtonet_connected", TOKEN_LABELS),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("localtonet_connects_total", TOKEN_LABELS),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("localtonet_disconnects_total", TOKEN_LABELS),
        Some(1.0)
    );
    assert!(scrape.contains(&format!(
        "localtonet_last_change_timestamp_seconds{{{TOKEN_LABELS}}} 1714394117.15458\n"
    )));
}

#[test]
fn case_02_dotnet_date_forms_are_all_accepted_with_sub_second_precision() {
    let exporter = Exporter::start(&[]);
    for (file, id, expected) in [
        ("02-seven-digits-z.json", "tun-seven", "1714394117.1545804"),
        ("02-no-fraction-z.json", "tun-whole", "1714394117"),
        ("02-nine-digits-z.json", "tun-nine", "1714394117.1234567"),
        (
            "02-offset-plus-three.json",
            "tun-offset",
            "1714383317.15458",
        ),
    ] {
        exporter.send(&read_fixture(&format!("webhooks/{file}")));
        let line = format!(
            "localtonet_last_change_timestamp_seconds{{{}}} {expected}\n",
            tunnel(id)
        );
        assert!(exporter.scrape().contains(&line), "{file}: missing {line}");
    }
}

#[test]
fn case_02_timezone_flag_reads_dates_without_offset_in_that_zone() {
    let exporter = Exporter::start(&["--webhook.timezone=Europe/Istanbul"]);
    exporter.send(&read_fixture("webhooks/01-documented-sample.json"));
    let value = exporter
        .scrape()
        .value("localtonet_last_change_timestamp_seconds", TOKEN_LABELS);
    assert_eq!(
        value,
        Some(1714383317.15458),
        "12:35:17 in Istanbul is 09:35:17 UTC"
    );
}

#[test]
fn case_03_camel_case_keys_are_accepted() {
    let exporter = Exporter::start(&[]);
    exporter.send(&read_fixture("webhooks/03-camel-case.json"));
    assert_eq!(
        exporter
            .scrape()
            .value("localtonet_connected", &tunnel("tun-camel")),
        Some(1.0)
    );
}

#[test]
fn case_04_unknown_keys_are_ignored() {
    let exporter = Exporter::start(&[]);
    exporter.send(&read_fixture("webhooks/04-extra-keys.json"));
    assert_eq!(
        exporter
            .scrape()
            .value("localtonet_connected", &tunnel("tun-extra")),
        Some(1.0)
    );
}

#[test]
fn case_05_content_type_does_not_matter() {
    let exporter = Exporter::start(&[]);
    let body = read_fixture("webhooks/01-documented-sample.json");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let headers: Vec<(&str, &str)> =
            content_type.iter().map(|v| ("Content-Type", *v)).collect();
        let answer = exporter.post_with("/webhook", body.as_bytes(), &headers);
        assert_eq!(answer.status, 200, "{content_type:?}: {}", answer.body);
    }
}

#[test]
fn case_06_empty_or_oversized_bodies_are_refused_and_change_nothing() {
    let exporter = Exporter::start(&["--webhook.max-body-bytes=1024"]);
    let before = exporter.scrape();

    let empty = exporter.post("/webhook", &read_fixture("webhooks/06-empty-body.txt"));
    assert_eq!(empty.status, 400);
    assert!(
        empty.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("body is empty")
    );

    let object = exporter.post("/webhook", &read_fixture("webhooks/06-empty-object.json"));
    assert_eq!(object.status, 400);
    assert_eq!(object.json()["field"], "Id");
    assert_eq!(object.json()["error"], "field Id is missing");

    let padded = format!(
        "{}{}",
        read_fixture("webhooks/01-documented-sample.json"),
        " ".repeat(2000)
    );
    let large = exporter.post("/webhook", &padded);
    assert_eq!(large.status, 413);
    assert!(
        large.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("1024 bytes")
    );

    let after = exporter.scrape();
    assert!(
        !after.contains("localtonet_connected{"),
        "no series may appear"
    );
    assert_eq!(
        before.value("localtonet_exporter_ids", r#"type="token""#),
        Some(0.0)
    );
    assert_eq!(
        after.value("localtonet_exporter_ids", r#"type="token""#),
        Some(0.0)
    );
    let invalid = r#"outcome="invalid""#;
    assert_eq!(
        after.value("localtonet_exporter_webhook_requests_total", invalid),
        Some(2.0)
    );
    let too_large = r#"outcome="too_large""#;
    assert_eq!(
        after.value("localtonet_exporter_webhook_requests_total", too_large),
        Some(1.0)
    );
}

#[test]
fn case_06_chunked_body_over_the_limit_is_refused_too() {
    let exporter = Exporter::start(&["--webhook.max-body-bytes=1024"]);
    let body = format!(
        "[{}]",
        vec![read_fixture("webhooks/01-documented-sample.json"); 20].join(",")
    );
    // ureq sends a known length; a raw chunked request checks the streaming limit.
    let request = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw_request(&exporter.address, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn case_07_array_is_applied_in_action_date_order_and_empty_array_is_a_no_op() {
    let exporter = Exporter::start(&[]);
    let answer = exporter.send(&read_fixture("webhooks/07-array.json"));
    let ids: Vec<&str> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["tun-b", "tun-a"], "answered in the order of the body");
    assert_eq!(answer["events"][1]["index"], 1);
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value("localtonet_connected", &tunnel("tun-a")),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("localtonet_connected", &tunnel("tun-b")),
        Some(1.0)
    );

    // One id, newest event first in the body: applied oldest first, so neither is late.
    let answer = exporter.send(&read_fixture("webhooks/07-array-one-id-newest-first.json"));
    let outcomes: Vec<&str> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["applied", "applied"]);
    let scrape = exporter.scrape();
    let labels = tunnel("tun-order");
    assert_eq!(scrape.value("localtonet_connected", &labels), Some(1.0));
    let since = scrape.value("localtonet_last_change_timestamp_seconds", &labels);
    assert_eq!(since, Some(1714394118.0));

    let empty = exporter.send(&read_fixture("webhooks/07-empty-array.json"));
    assert_eq!(empty["events"].as_array().map(Vec::len), Some(0));
}

#[test]
fn case_08_late_disconnect_does_not_move_gauge_but_is_counted_out_of_order() {
    let exporter = Exporter::start(&[]);
    exporter.send(&read_fixture("webhooks/08-connected-at-18.json"));
    let answer = exporter.send(&read_fixture("webhooks/08-late-disconnected-at-17.json"));
    assert_eq!(answer["events"][0]["outcome"], "out_of_order");

    let scrape = exporter.scrape();
    let labels = tunnel("tun-late");
    assert_eq!(scrape.value("localtonet_connected", &labels), Some(1.0));
    assert_eq!(
        scrape.value("localtonet_last_change_timestamp_seconds", &labels),
        Some(1714394118.0)
    );
    assert_eq!(
        scrape.value("localtonet_disconnects_total", &labels),
        Some(1.0)
    );
    let ooo = r#"outcome="out_of_order",type="tunnel""#;
    assert_eq!(
        scrape.value("localtonet_exporter_events_total", ooo),
        Some(1.0)
    );
}

#[test]
fn case_09_repeated_delivery_is_counted_once() {
    let exporter = Exporter::start(&[]);
    let body = read_fixture("webhooks/01-documented-sample.json");
    let outcomes: Vec<String> = (0..3)
        .map(|_| {
            exporter.send(&body)["events"][0]["outcome"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(outcomes, ["applied", "duplicate", "duplicate"]);
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value("localtonet_disconnects_total", TOKEN_LABELS),
        Some(1.0)
    );
    let duplicates = r#"outcome="duplicate",type="token""#;
    assert_eq!(
        scrape.value("localtonet_exporter_events_total", duplicates),
        Some(2.0)
    );
}

#[test]
fn case_10_unknown_type_or_status_names_the_field_and_allowed_values() {
    let exporter = Exporter::start(&[]);
    for (file, field, allowed) in [
        ("10-unknown-type.json", "Type", "Token, Tunnel"),
        (
            "10-unknown-status.json",
            "Status",
            "Connected, Disconnected",
        ),
    ] {
        let answer = exporter.post("/webhook", &read_fixture(&format!("webhooks/{file}")));
        assert_eq!(answer.status, 400, "{file}");
        assert_eq!(answer.json()["field"], field);
        let error = answer.json()["error"].as_str().unwrap_or("").to_string();
        assert!(error.contains(allowed), "{file}: {error}");
    }
    assert!(
        !exporter.scrape().contains("tun-x"),
        "no series for refused events"
    );
}

#[test]
fn case_11_ids_with_quotes_backslashes_or_newlines_are_refused_and_scrape_stays_valid() {
    let exporter = Exporter::start(&[]);
    for file in [
        "11-id-with-quote.json",
        "11-id-with-backslash.json",
        "11-id-with-newline.json",
    ] {
        let answer = exporter.post("/webhook", &read_fixture(&format!("webhooks/{file}")));
        assert_eq!(answer.status, 400, "{file}");
        assert_eq!(answer.json()["field"], "Id", "{file}");
    }
    exporter.send(&read_fixture("webhooks/03-camel-case.json"));
    let problems = promtool_check_metrics(&exporter.scrape().0);
    assert_eq!(problems, "", "promtool check metrics");
}

#[test]
fn case_12_raw_token_never_appears_in_metrics_logs_or_store() {
    let exporter = Exporter::start(&["--log.level=debug", "--web.enable-admin-api"]);
    exporter.send(&read_fixture("webhooks/01-documented-sample.json"));
    // A refused token event is logged too: its reason must not quote the token.
    let bad = read_fixture("webhooks/01-documented-sample.json").replace("Token\"", "Tokn\"");
    assert_eq!(exporter.post("/webhook", &bad).status, 400);

    assert!(
        !exporter.scrape().contains(SAMPLE_TOKEN),
        "token in /metrics"
    );
    let list = exporter.get("/api/v1/admin/ids");
    assert_eq!(list.status, 200);
    assert!(list.body.contains(SAMPLE_FINGERPRINT) && !list.body.contains(SAMPLE_TOKEN));
    assert!(
        exporter.logs().contains(SAMPLE_FINGERPRINT),
        "logs name the fingerprint"
    );
    assert!(!exporter.logs().contains(SAMPLE_TOKEN), "token in logs");

    let dir = exporter.dir.clone();
    drop(exporter);
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        let content = std::fs::read(&path).expect("read file");
        let found = content
            .windows(SAMPLE_TOKEN.len())
            .any(|w| w == SAMPLE_TOKEN.as_bytes());
        assert!(!found, "token written to {}", path.display());
    }
}

/// Sends raw bytes and returns the whole answer as text.
fn raw_request(address: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

//! Hostile clients: webhook secret, source allow-list, slow clients, connection cap, rate
//! limit, TLS with basic auth, and configuration reloads — all against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{Exporter, event, write_file};

const SECRET: &str = "k3y-for-tests_0123456789abcdef";

fn tunnel_event(id: &str) -> String {
    event("Tunnel", id, "Connected", &Utc::now().to_rfc3339())
}

fn with_secret() -> Exporter {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let path = write_file(dir.path(), "secret", &format!("{SECRET}\n"));
    let flag = format!("--webhook.secret-file={}", path.display());
    Exporter::start_in(dir, &[&flag, "--log.level=debug"])
}

#[test]
fn without_a_secret_file_the_exporter_warns_that_the_webhook_is_open() {
    let exporter = Exporter::start(&[]);
    assert!(
        exporter.logs().contains("the webhook endpoint is open"),
        "{}",
        exporter.logs()
    );
}

#[test]
fn missing_or_wrong_secret_is_refused_and_counted() {
    let exporter = with_secret();
    let body = tunnel_event("t1");
    assert_eq!(exporter.post("/webhook", &body).status, 401);
    assert_eq!(
        exporter
            .post("/webhook?secret=wrong-secret-value-000", &body)
            .status,
        401
    );
    let wrong_bearer = [("Authorization", "Bearer wrong-secret-value-000")];
    assert_eq!(
        exporter
            .post_with("/webhook", body.as_bytes(), &wrong_bearer)
            .status,
        401
    );
    assert_eq!(
        exporter
            .post("/webhook/wrong-secret-value-000", &body)
            .status,
        404
    );

    let scrape = exporter.scrape();
    let unauthorized = r#"outcome="unauthorized""#;
    assert_eq!(
        scrape.value("localtonet_exporter_webhook_requests_total", unauthorized),
        Some(4.0)
    );
    assert!(
        !scrape.contains(r#"id="t1""#),
        "refused events change nothing"
    );
    assert!(
        exporter.logs().contains("source=127.0.0.1"),
        "peer logged:\n{}",
        exporter.logs()
    );
}

#[test]
fn right_secret_is_accepted_in_each_of_the_three_forms_and_never_logged_or_exposed() {
    let exporter = with_secret();
    let in_path = exporter.post(&format!("/webhook/{SECRET}?group=path"), &tunnel_event("p"));
    assert_eq!(in_path.status, 200, "{}", in_path.body);
    let in_query = exporter.post(&format!("/webhook?secret={SECRET}"), &tunnel_event("q"));
    assert_eq!(in_query.status, 200, "{}", in_query.body);
    let bearer = format!("bearer {SECRET}");
    let in_header = exporter.post_with(
        "/webhook",
        tunnel_event("h").as_bytes(),
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(
        in_header.status, 200,
        "scheme matches in any case: {}",
        in_header.body
    );
    let trailing = exporter.post(&format!("/webhook/{SECRET}/"), &tunnel_event("t"));
    assert_eq!(
        trailing.status, 200,
        "a trailing slash is forgiven: {}",
        trailing.body
    );
    let second = exporter.post(
        &format!("/webhook?secret=bad&secret={SECRET}"),
        &tunnel_event("s"),
    );
    assert_eq!(
        second.status, 200,
        "any secret parameter may match: {}",
        second.body
    );
    // Refusals with the secret in the path or query must not log it either.
    exporter.post(&format!("/webhook/{SECRET}"), "{}");
    exporter.post(
        &format!("/webhook?secret={SECRET}&group=bad%20group"),
        &tunnel_event("x"),
    );

    let scrape = exporter.scrape();
    assert!(scrape.contains(r#"id="p",group="path""#));
    assert!(scrape.contains(r#"id="q""#) && scrape.contains(r#"id="h""#));
    assert!(!scrape.contains(SECRET), "secret in /metrics");
    assert!(
        !exporter.logs().contains(SECRET),
        "secret in logs:\n{}",
        exporter.logs()
    );
}

#[test]
fn a_flood_of_refused_requests_is_logged_at_warn_only_once_a_second() {
    let exporter = Exporter::start(&[]);
    for _ in 0..50 {
        assert_eq!(exporter.post("/webhook", "{").status, 400);
    }
    let warned = exporter
        .logs()
        .matches("level=warn message=\"webhook refused\"")
        .count();
    assert!(
        (1..=3).contains(&warned),
        "{warned} warnings:\n{}",
        exporter.logs()
    );
    std::thread::sleep(Duration::from_millis(1100));
    exporter.post("/webhook", "{");
    assert!(
        exporter.wait_for_log("held_back=", Duration::from_secs(5)),
        "{}",
        exporter.logs()
    );
}

#[test]
fn turning_expose_token_ids_off_keeps_one_series_per_token_and_scrubs_the_raw_token() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let exposed = Exporter::start_in(
        Arc::clone(&dir),
        &["--webhook.expose-token-ids", "--web.enable-admin-api"],
    );
    exposed.send(common::SAMPLE);
    let raw = format!(r#"type="token",id="{}""#, common::SAMPLE_TOKEN);
    assert_eq!(
        exposed.scrape().value("localtonet_disconnects_total", &raw),
        Some(1.0)
    );
    drop(exposed);

    let hidden = Exporter::start_in(Arc::clone(&dir), &["--web.enable-admin-api"]);
    assert!(
        hidden.logs().contains("removed raw tokens from the store"),
        "{}",
        hidden.logs()
    );
    let connected = common::SAMPLE
        .replace("Disconnected", "Connected")
        .replace("2024-04-29T12:35:17.154580", &Utc::now().to_rfc3339());
    hidden.send(&connected);
    let scrape = hidden.scrape();
    let fingerprinted = r#"type="token",id="3b8f0e6747ce707b""#;
    assert_eq!(
        scrape.value("localtonet_disconnects_total", fingerprinted),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("localtonet_connects_total", fingerprinted),
        Some(1.0)
    );
    assert_eq!(
        scrape.0.matches("localtonet_connected{").count(),
        1,
        "one series per token"
    );
    assert!(!scrape.contains(common::SAMPLE_TOKEN));
    assert!(
        !hidden
            .get("/api/v1/admin/ids")
            .body
            .contains(common::SAMPLE_TOKEN)
    );
    drop(hidden);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let token = common::SAMPLE_TOKEN.as_bytes();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token),
            "{}",
            path.display()
        );
    }
}

#[test]
fn sources_outside_allowed_cidrs_are_refused_unless_a_trusted_proxy_vouches() {
    let exporter = Exporter::start(&["--webhook.allowed-cidrs=10.0.0.0/8"]);
    let answer = exporter.post("/webhook", &tunnel_event("a"));
    assert_eq!(answer.status, 403, "{}", answer.body);
    let spoofed = [("X-Forwarded-For", "10.1.2.3")];
    let answer = exporter.post_with("/webhook", tunnel_event("a").as_bytes(), &spoofed);
    assert_eq!(
        answer.status, 403,
        "X-Forwarded-For from an untrusted peer is ignored"
    );
    let forbidden = r#"outcome="forbidden""#;
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value("localtonet_exporter_webhook_requests_total", forbidden),
        Some(2.0)
    );

    let proxied = Exporter::start(&[
        "--webhook.allowed-cidrs=10.0.0.0/8",
        "--web.trusted-proxies=127.0.0.1/32",
    ]);
    let answer = proxied.post_with("/webhook", tunnel_event("a").as_bytes(), &spoofed);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let outside = [("X-Forwarded-For", "192.0.2.1")];
    let answer = proxied.post_with("/webhook", tunnel_event("a").as_bytes(), &outside);
    assert_eq!(answer.status, 403);
}

/// Writes `bytes` one at a time, `pause` apart, until the server closes the connection.
/// Returns how long the server took to close it.
fn drip(address: &str, bytes: &[u8], pause: Duration) -> Duration {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let started = Instant::now();
    for byte in bytes.iter().cycle() {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {} // An answer (408) arrived; keep reading until closed.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never disconnected"
        );
        std::thread::sleep(pause);
    }
    started.elapsed()
}

#[test]
fn slow_drip_headers_are_cut_off_at_the_header_timeout_while_others_are_served() {
    let exporter = Exporter::start(&["--web.header-timeout=2s"]);
    let address = exporter.address.clone();
    let dripper = std::thread::spawn(move || {
        drip(
            &address,
            b"POST /webhook HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa",
            Duration::from_secs(1),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        assert_eq!(
            exporter.get("/-/healthy").status,
            200,
            "others are served meanwhile"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = dripper.join().expect("dripper");
    assert!(
        took < Duration::from_secs(5),
        "cut off after {took:?}, header timeout is 2s"
    );
    let hits = exporter.scrape().value(
        "localtonet_exporter_limit_hits_total",
        r#"limit="header_timeout""#,
    );
    assert!(hits >= Some(1.0), "{hits:?}");
}

#[test]
fn slow_drip_body_is_answered_408_at_the_body_timeout() {
    let exporter = Exporter::start(&["--web.body-timeout=2s"]);
    let mut stream = TcpStream::connect(&exporter.address).expect("connect");
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        .expect("headers");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let scrape = exporter.scrape();
    let timeout = r#"outcome="timeout""#;
    assert_eq!(
        scrape.value("localtonet_exporter_webhook_requests_total", timeout),
        Some(1.0)
    );
}

#[test]
fn connections_over_the_cap_wait_until_a_slot_frees() {
    let exporter = Exporter::start(&["--web.max-connections=2", "--web.header-timeout=20s"]);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&exporter.address).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let address = exporter.address.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let _ = done_tx.send(answer);
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "a third connection must wait while two are open"
    );
    drop(idle);
    let answer = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("served once a slot freed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let hits = exporter.scrape().value(
        "localtonet_exporter_limit_hits_total",
        r#"limit="max_connections""#,
    );
    assert!(hits >= Some(1.0), "{hits:?}");
}

#[test]
fn rate_limit_answers_429_per_source_and_spares_health_checks() {
    let exporter = Exporter::start(&["--web.rate-limit=1", "--web.rate-limit-burst=3"]);
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            exporter
                .post("/webhook", &tunnel_event(&format!("r{i}")))
                .status
        })
        .collect();
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let refused = exporter.post("/webhook", &tunnel_event("r9"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!((0..20).all(|_| exporter.get("/-/healthy").status == 200));

    std::thread::sleep(Duration::from_millis(1100));
    let scrape = exporter.scrape();
    let limited = r#"outcome="rate_limited""#;
    assert!(scrape.value("localtonet_exporter_webhook_requests_total", limited) >= Some(3.0));
    assert!(
        scrape.value(
            "localtonet_exporter_limit_hits_total",
            r#"limit="rate_limit""#
        ) >= Some(3.0)
    );
}

/// Makes a self-signed certificate for localhost and a web config with one bcrypt user.
fn tls_setup(dir: &Path) -> std::path::PathBuf {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    write_file(dir, "cert.pem", &cert.cert.pem());
    write_file(dir, "key.pem", &cert.signing_key.serialize_pem());
    let hash = bcrypt::hash("s3cret pass", 8).expect("bcrypt");
    write_file(
        dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl is not installed ({e}): run ./scripts/test.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn tls_and_basic_auth_from_an_exporter_toolkit_web_config() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let web = tls_setup(dir.path());
    let flag = format!("--web.config.file={}", web.display());
    let exporter = Exporter::start_in(Arc::clone(&dir), &[&flag]);
    assert_eq!(exporter.scheme, "https");
    let port = exporter
        .address
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let cacert = dir.path().join("cert.pem").display().to_string();
    let base = format!("https://localhost:{port}");

    let (ok, out) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        "prometheus:s3cret pass",
        &format!("{base}/metrics"),
    ]);
    assert!(ok && out.ends_with("\n200"), "{out}");
    assert!(out.contains("localtonet_exporter_build_info"), "{out}");

    let (_, out) = curl(&["--cacert", &cacert, &format!("{base}/metrics")]);
    assert!(out.ends_with("\n401"), "without credentials: {out}");
    let (_, out) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        "prometheus:wrong",
        &format!("{base}/"),
    ]);
    assert!(out.ends_with("\n401"), "wrong password: {out}");
    let (_, out) = curl(&["--cacert", &cacert, &format!("{base}/-/healthy")]);
    assert!(out.ends_with("\n200"), "health stays open: {out}");

    let (_, out) = curl(&[
        "--cacert",
        &cacert,
        "-X",
        "POST",
        "--data",
        &tunnel_event("tls"),
        &format!("{base}/webhook"),
    ]);
    assert!(
        out.ends_with("\n200"),
        "the webhook needs no basic auth: {out}"
    );

    let (ok, out) = curl(&[&format!("http://localhost:{port}/metrics")]);
    assert!(
        !ok && !out.ends_with("\n200"),
        "plain HTTP must be refused: {out}"
    );
}

#[test]
fn sighup_and_lifecycle_reload_reread_names_secret_and_web_config() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let names = write_file(dir.path(), "names.toml", "[tunnels]\nt1 = \"First\"\n");
    let secret = write_file(dir.path(), "secret", SECRET);
    let exporter = Exporter::start_in(
        Arc::clone(&dir),
        &[
            &format!("--names.file={}", names.display()),
            &format!("--webhook.secret-file={}", secret.display()),
            "--web.enable-lifecycle",
        ],
    );
    let post = |secret: &str| exporter.post(&format!("/webhook/{secret}"), &tunnel_event("t1"));
    assert_eq!(post(SECRET).status, 200);
    assert!(exporter.scrape().contains(r#"id="t1",name="First""#));

    std::fs::write(&names, "[tunnels]\nt1 = \"Second\"\n").expect("names");
    let new_secret = "rotated-secret-value-9876543210";
    std::fs::write(&secret, new_secret).expect("secret");
    exporter.signal("HUP");
    assert!(exporter.wait_for_log("reloaded configuration files", Duration::from_secs(10)));
    assert!(exporter.scrape().contains(r#"id="t1",name="Second""#));
    assert_eq!(post(SECRET).status, 404, "old secret no longer works");
    assert_eq!(post(new_secret).status, 200);

    std::fs::write(&names, "[tunnels]\nt1 = \n").expect("broken names");
    let answer = exporter.post("/-/reload", "");
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(answer.body.contains("names.toml"), "{}", answer.body);
    let scrape = exporter.scrape();
    assert!(
        scrape.contains(r#"id="t1",name="Second""#),
        "old names stay"
    );
    assert_eq!(
        scrape.value("localtonet_exporter_config_last_reload_successful", ""),
        Some(0.0)
    );
    assert_eq!(post(new_secret).status, 200, "old secret stays");

    std::fs::write(&names, "[tunnels]\nt1 = \"Third\"\n").expect("names");
    assert_eq!(exporter.post("/-/reload", "").status, 200);
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value("localtonet_exporter_config_last_reload_successful", ""),
        Some(1.0)
    );
    let reloaded_at = scrape.value(
        "localtonet_exporter_config_last_reload_success_timestamp_seconds",
        "",
    );
    assert!(reloaded_at > Some(Utc::now().timestamp() as f64 - 60.0));
}

#[test]
fn web_config_headers_are_added_to_every_answer() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let web = write_file(
        dir.path(),
        "web.yml",
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    );
    let exporter = Exporter::start_in(dir, &[&format!("--web.config.file={}", web.display())]);
    for answer in [
        exporter.get("/metrics"),
        exporter.get("/-/healthy"),
        exporter.post("/webhook", &tunnel_event("h")),
        exporter.get("/nowhere"),
    ] {
        assert_eq!(answer.header("x-frame-options"), Some("deny"), "{answer:?}");
    }
}

#[test]
fn lifecycle_reload_is_off_unless_enabled() {
    let exporter = Exporter::start(&[]);
    assert_eq!(exporter.post("/-/reload", "").status, 404);
}

#[test]
fn reload_of_the_web_config_changes_basic_auth_users() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let hash = bcrypt::hash("one", 4).expect("bcrypt");
    let web = write_file(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  a: '{hash}'\n"),
    );
    let exporter = Exporter::start_in(
        Arc::clone(&dir),
        &[
            &format!("--web.config.file={}", web.display()),
            "--web.enable-lifecycle",
        ],
    );
    let auth = |user: &str, password: &str| {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let header = format!("Basic {token}");
        common::request(
            &common::agent(),
            "GET",
            &exporter.url("/metrics"),
            None,
            &[("Authorization", header.as_str())],
        )
        .status
    };
    assert_eq!(auth("a", "one"), 200);
    let hash = bcrypt::hash("two", 4).expect("bcrypt");
    std::fs::write(&web, format!("basic_auth_users:\n  b: '{hash}'\n")).expect("web");
    exporter.signal("HUP");
    assert!(exporter.wait_for_log("reloaded configuration files", Duration::from_secs(10)));
    assert_eq!(auth("a", "one"), 401);
    assert_eq!(auth("b", "two"), 200);
}

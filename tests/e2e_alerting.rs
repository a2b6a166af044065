//! End-to-end test of the operations bundle with the real tools: the exporter, Prometheus
//! loading `prometheus/alerts.yml` through a configuration made from the shipped
//! `prometheus.yml`, and Alertmanager running a configuration made from the shipped
//! `alertmanager/alertmanager.yml` whose receivers point at a small HTTP receiver run by the
//! test.
//!
//! It proves that a disconnected tunnel reaches the receiver as `LocaltonetTunnelDisconnected`
//! with the documented labels and annotations, that the reconnect resolves it, that the
//! `send` subcommand feeds a running exporter, that every query and template variable of
//! the Grafana dashboards returns data from a real Prometheus, and that the dashboard's
//! disconnect counts equal the Disconnected events sent, first events of new ids included.
//!
//! The tools come from the Debian packages `prometheus` and `prometheus-alertmanager`;
//! `scripts/test.sh` installs them. A missing tool fails the test; nothing is skipped.

mod common;
// In a folder of their own, so that Cargo does not take them for test targets.
#[path = "e2e_alerting/configs.rs"]
mod configs;
#[path = "e2e_alerting/daemon.rs"]
mod daemon;
#[path = "e2e_alerting/dashboards.rs"]
mod dashboards;
#[path = "e2e_alerting/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value as Yaml;

use common::{Exporter, SAMPLE_FINGERPRINT, SAMPLE_TOKEN, event};
use configs::{alertmanager_config, prometheus_config};
use daemon::{Daemon, http_get, tail, tool};
use receiver::{Notification, Receiver};

/// Scrape and rule evaluation interval of the test's Prometheus.
const INTERVAL: &str = "1s";

/// Longest wait for Prometheus to scrape what was sent, and for a notification to arrive.
/// Each is normally a few seconds; the margin keeps a loaded CI machine from failing the test.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(90);

/// Pause between two polls.
const POLL: Duration = Duration::from_millis(200);

/// The alert the test follows from Prometheus to the receiver.
const ALERT: &str = "LocaltonetTunnelDisconnected";

/// The tunnel that goes down: named, in group `e2e`.
const TUNNEL: &str = "tun-e2e-office";
const TUNNEL_NAME: &str = "office-ssh";
const TUNNEL_GROUP: &str = "e2e";

/// A named tunnel in group `edge` that flaps.
const FLAPPER: &str = "tun-e2e-flappy";
const FLAPPER_NAME: &str = "flappy-web";

/// A tunnel with neither name nor group.
const ANONYMOUS_TUNNEL: &str = "tun-e2e-anon";

/// A named tunnel that never sends an event (`localtonet_unreported`, no group).
const SILENT_TUNNEL: &str = "tun-e2e-spare";
const SILENT_TUNNEL_NAME: &str = "spare-db";

/// The documentation's authtoken, named, in group `edge`.
const TOKEN_NAME: &str = "home-lab";

/// A token with neither name nor group.
const ANONYMOUS_TOKEN: &str = "e2eAnonymousToken0000000";

/// The group of the flapper and the named token.
const OTHER_GROUP: &str = "edge";

#[test]
fn tunnel_alert_is_notified_and_resolved_and_every_dashboard_query_has_data() {
    let started = Instant::now();
    let stack = Stack::start(&names_file());
    let before_events = stack.stored_scrape_time();
    step(
        started,
        "exporter, receiver, Alertmanager and Prometheus are up",
    );

    let down_at = (Utc::now() - chrono::Duration::minutes(10)).trunc_subsecs(0)
        + chrono::Duration::microseconds(154_580);
    let sent_at = Instant::now();
    stack.send_with_cli(TUNNEL, "disconnected", Some(&localtonet_date(down_at)));
    send_first_events(&stack);
    stack.wait_until_scraped();
    send_flaps_and_rejections(&stack);
    stack.wait_until_scraped();
    step(started, "events sent and scraped");

    // While the events are less than a minute old, so that `rate(...[$__rate_interval])`
    // still sees them.
    dashboards::check_dashboards(&stack.prometheus, &expected_variable_values());
    step(started, "every dashboard query and variable returned data");

    let expected = expected_disconnects();
    let sent: u32 = expected.values().sum();
    let counted = stack
        .exporter
        .scrape()
        .sum("localtonet_disconnects_total", "");
    assert_eq!(
        counted,
        f64::from(sent),
        "the exporter counts other disconnects than were sent"
    );
    dashboards::check_disconnect_counts(&stack.prometheus, before_events, &expected);
    step(started, "the dashboard counts every disconnect sent");

    let firing = stack.wait_for_notification("firing");
    check_firing_notification(&stack, &firing, down_at, sent_at.elapsed());
    step(started, "firing notification received");

    stack.send_with_cli(TUNNEL, "connected", None);
    let resolved = stack.wait_for_notification("resolved");
    assert_eq!(
        resolved.alert["labels"], firing.alert["labels"],
        "the resolved alert has other labels than the firing one"
    );
    step(started, "resolved notification received");
}

/// The names file: the tunnel that goes down, the flapper, a silent tunnel, a token.
fn names_file() -> String {
    format!(
        "[tunnels]\n\
         \"{TUNNEL}\" = \"{TUNNEL_NAME}\"\n\
         \"{FLAPPER}\" = \"{FLAPPER_NAME}\"\n\
         \"{SILENT_TUNNEL}\" = \"{SILENT_TUNNEL_NAME}\"\n\
         \n\
         [tokens]\n\
         \"{SAMPLE_TOKEN}\" = \"{TOKEN_NAME}\"\n"
    )
}

/// Events before the first scrape: a tunnel and a token in each of no group and group
/// `edge`, the flapper's first disconnect, and a repeat (counted as a duplicate).
fn send_first_events(stack: &Stack) {
    let now = Utc::now();
    let edge = format!("/webhook?group={OTHER_GROUP}");
    let token_up = event("Token", SAMPLE_TOKEN, "Connected", &localtonet_date(now));
    stack.post_accepted(
        &edge,
        &event(
            "Tunnel",
            FLAPPER,
            "Disconnected",
            &localtonet_date(now - chrono::Duration::seconds(30)),
        ),
    );
    stack.post_accepted(&edge, &token_up);
    stack.post_accepted(&edge, &token_up);
    stack.post_accepted(
        "/webhook",
        &event(
            "Tunnel",
            ANONYMOUS_TUNNEL,
            "Connected",
            &localtonet_date(now),
        ),
    );
    stack.post_accepted(
        "/webhook",
        &event("Token", ANONYMOUS_TOKEN, "Connected", &localtonet_date(now)),
    );
}

/// Events after the first scrape, so that counters rise between samples: the flapper goes
/// up and down twice more and ends up, the named token goes down, an event older than its
/// id's newest arrives (out of order), and a malformed webhook is refused (invalid).
fn send_flaps_and_rejections(stack: &Stack) {
    let now = Utc::now();
    let edge = format!("/webhook?group={OTHER_GROUP}");
    for (i, status) in [
        "Connected",
        "Disconnected",
        "Connected",
        "Disconnected",
        "Connected",
    ]
    .into_iter()
    .enumerate()
    {
        let at = now - chrono::Duration::seconds(10) + chrono::Duration::seconds(i as i64);
        stack.post_accepted(
            &edge,
            &event("Tunnel", FLAPPER, status, &localtonet_date(at)),
        );
    }
    stack.post_accepted(
        &edge,
        &event("Token", SAMPLE_TOKEN, "Disconnected", &localtonet_date(now)),
    );
    stack.post_accepted(
        "/webhook",
        &event(
            "Tunnel",
            ANONYMOUS_TUNNEL,
            "Disconnected",
            &localtonet_date(now - chrono::Duration::hours(1)),
        ),
    );
    let refused = stack.exporter.post("/webhook", r#"{"Id": "tun-e2e-bad"}"#);
    assert_eq!(
        refused.status, 400,
        "an event without Status must be refused: {}",
        refused.body
    );
}

/// Checks the firing notification of [`ALERT`] for [`TUNNEL`]: receiver, grouping, labels
/// and annotations.
fn check_firing_notification(
    stack: &Stack,
    firing: &Notified,
    down_at: DateTime<Utc>,
    since_sent: Duration,
) {
    let receiver = expected_receiver(&[
        ("alertname", ALERT),
        ("severity", "critical"),
        ("type", "tunnel"),
        ("id", TUNNEL),
        ("name", TUNNEL_NAME),
        ("group", TUNNEL_GROUP),
        ("job", "localtonet"),
    ]);
    assert_eq!(
        firing.notification.body["receiver"], receiver,
        "routed to another receiver than `amtool config routes test` names"
    );
    assert_eq!(firing.notification.path, format!("/{receiver}"));

    let group_by: BTreeSet<String> =
        shipped_yaml("alertmanager/alertmanager.yml")["route"]["group_by"]
            .as_sequence()
            .expect("the shipped route has group_by")
            .iter()
            .filter_map(|label| label.as_str().map(str::to_owned))
            .collect();
    let group_labels: BTreeSet<String> = firing.notification.body["groupLabels"]
        .as_object()
        .map(|labels| labels.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        group_labels, group_by,
        "notification not grouped as shipped"
    );

    let expected_labels = json!({
        "alertname": ALERT,
        "severity": "critical",
        "type": "tunnel",
        "id": TUNNEL,
        "name": TUNNEL_NAME,
        "group": TUNNEL_GROUP,
        "job": "localtonet",
        "instance": stack.exporter.address,
    });
    assert_eq!(firing.alert["labels"], expected_labels, "labels of {ALERT}");

    let annotations = &firing.alert["annotations"];
    assert_eq!(
        annotations["summary"],
        format!("Tunnel {TUNNEL_NAME} is disconnected")
    );
    let description = annotations["description"].as_str().unwrap_or_default();
    let prefix = format!(
        "Tunnel \"{TUNNEL_NAME}\" (id {TUNNEL}) in group {TUNNEL_GROUP} has been disconnected for "
    );
    let since = format!(", since {}", down_at.format("%Y-%m-%d %H:%M:%S"));
    let duration = description
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split_once(&since))
        .filter(|(_, end)| end.ends_with('.'))
        .map(|(duration, _)| duration)
        .unwrap_or_else(|| {
            panic!("description is not `{prefix}<duration>{since}...`: {description:?}")
        });
    let seconds = humanized_seconds(duration)
        .unwrap_or_else(|| panic!("{duration:?} in the description is not `<m>m <s>s`"));
    let most = 600 + since_sent.as_secs() + 2;
    assert!(
        (600..=most).contains(&seconds),
        "the description says down for {duration} ({seconds} s); expected 600 to {most} s"
    );
    assert!(
        annotations["runbook"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{ALERT} has no runbook annotation"
    );
}

/// Seconds in a duration as Prometheus' `humanizeDuration` writes it between 1 minute and 1
/// hour (`10m 3s`).
fn humanized_seconds(text: &str) -> Option<u64> {
    let (minutes, seconds) = text.split_once("m ")?;
    let seconds = seconds.strip_suffix('s')?;
    Some(minutes.parse::<u64>().ok()? * 60 + seconds.parse::<u64>().ok()?)
}

/// The receiver(s) the shipped Alertmanager configuration routes an alert with `labels` to,
/// as `amtool config routes test` says.
fn expected_receiver(labels: &[(&str, &str)]) -> String {
    let config = repo().join("alertmanager/alertmanager.yml");
    let mut args = vec![
        "config".to_owned(),
        "routes".to_owned(),
        "test".to_owned(),
        format!("--config.file={}", config.display()),
    ];
    args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
    let output = Command::new(tool(&["amtool"]))
        .args(&args)
        .output()
        .expect("run amtool");
    assert!(
        output.status.success(),
        "amtool {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An ActionDate as Localtonet writes it: UTC, six fractional digits, no offset.
fn localtonet_date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_yaml(relative: &str) -> Yaml {
    let path = repo().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Prints a progress line with the time since the test started.
fn step(started: Instant, what: &str) {
    eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Calls `check` every [`POLL`] until it returns `Ok` or `timeout` has passed; then returns
/// its last error.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Everything the test runs. On a panic, prints what Prometheus and Alertmanager know and
/// their logs before the processes are stopped.
struct Stack {
    exporter: Exporter,
    receiver: Receiver,
    alertmanager: Daemon,
    prometheus: Daemon,
    // Dropped last: the daemons' data and logs live here.
    _work: tempfile::TempDir,
}

impl Stack {
    fn start(names: &str) -> Stack {
        let prometheus_bin = tool(&["prometheus"]);
        let alertmanager_bin = tool(&["prometheus-alertmanager", "alertmanager"]);

        let exporter_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let names_path = common::write_file(exporter_dir.path(), "names.toml", names);
        let exporter = Exporter::start_in(
            exporter_dir,
            &[&format!("--names.file={}", names_path.display())],
        );
        let receiver = Receiver::start();
        let work = tempfile::tempdir().expect("temp dir");

        let receiver_url = format!("http://{}", receiver.address);
        let am_config = work.path().join("alertmanager.yml");
        std::fs::write(&am_config, alertmanager_config(&receiver_url)).expect("write config");
        let am_storage = work.path().join("alertmanager-data");
        let alertmanager = Daemon::start(
            "alertmanager",
            &alertmanager_bin,
            work.path(),
            |address| {
                vec![
                    format!("--config.file={}", am_config.display()),
                    format!("--storage.path={}", am_storage.display()),
                    format!("--web.listen-address={address}"),
                    "--cluster.listen-address=".to_owned(),
                ]
            },
            ("/api/v2/status", &receiver_url),
        );

        let prom_config = work.path().join("prometheus.yml");
        let config = prometheus_config(&exporter.address, &alertmanager.address);
        std::fs::write(&prom_config, config).expect("write config");
        let tsdb = work.path().join("prometheus-data");
        let tsdb_text = tsdb.display().to_string();
        let prometheus = Daemon::start(
            "prometheus",
            &prometheus_bin,
            work.path(),
            |address| {
                vec![
                    format!("--config.file={}", prom_config.display()),
                    format!("--storage.tsdb.path={tsdb_text}"),
                    format!("--web.listen-address={address}"),
                ]
            },
            ("/api/v1/status/flags", &tsdb_text),
        );

        Stack {
            exporter,
            receiver,
            alertmanager,
            prometheus,
            _work: work,
        }
    }

    /// Posts one event with `localtonet-exporter send` to the webhook with group
    /// [`TUNNEL_GROUP`], and checks that the exporter applied it.
    fn send_with_cli(&self, id: &str, status: &str, at: Option<&str>) {
        let url = self.exporter.url(&format!("/webhook?group={TUNNEL_GROUP}"));
        let mut args = vec![
            "send",
            "--url",
            url.as_str(),
            "--type",
            "tunnel",
            "--id",
            id,
            "--status",
            status,
        ];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let output = Command::new(env!("CARGO_BIN_EXE_localtonet-exporter"))
            .args(&args)
            .output()
            .expect("run localtonet-exporter send");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "`localtonet-exporter {}` failed ({}): {stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Json = stdout
            .trim()
            .strip_prefix("200 ")
            .and_then(|body| serde_json::from_str(body).ok())
            .unwrap_or_else(|| panic!("`send` printed no `200 <JSON answer>`: {stdout}"));
        assert_eq!(
            answer["events"][0]["outcome"], "applied",
            "`send` event not applied: {stdout}"
        );
    }

    /// Posts a webhook to `path` and asserts that it was accepted.
    fn post_accepted(&self, path: &str, body: &str) {
        let answer = self.exporter.post(path, body);
        assert_eq!(answer.status, 200, "POST {path} {body}: {}", answer.body);
    }

    /// The time (Unix milliseconds) of the newest successful scrape of the exporter that
    /// Prometheus has stored. Ids created after this call are in no scrape up to that time.
    fn stored_scrape_time(&self) -> u64 {
        let stored = poll(SCRAPE_TIMEOUT, || {
            self.prometheus
                .query("timestamp(localtonet_exporter_build_info)")?
                .first()
                .map(|sample| (sample.value * 1000.0).round() as u64)
                .ok_or_else(|| "no successful scrape yet".to_owned())
        });
        stored.unwrap_or_else(|error| {
            panic!("Prometheus did not scrape the exporter in {SCRAPE_TIMEOUT:?}: {error}")
        })
    }

    /// Waits until Prometheus has scraped every webhook request the exporter has answered so
    /// far.
    fn wait_until_scraped(&self) {
        let total = "localtonet_exporter_webhook_requests_total";
        let answered = self.exporter.scrape().sum(total, "");
        let scraped = poll(SCRAPE_TIMEOUT, || {
            let seen = self
                .prometheus
                .query(&format!("sum({total})"))?
                .first()
                .map_or(0.0, |sample| sample.value);
            if seen >= answered {
                Ok(())
            } else {
                Err(format!(
                    "Prometheus has {seen} of {answered} webhook requests"
                ))
            }
        });
        if let Err(error) = scraped {
            panic!("Prometheus did not scrape the exporter in {SCRAPE_TIMEOUT:?}: {error}");
        }
    }

    /// Waits for a notification of [`ALERT`] for [`TUNNEL`] in which it has `status`.
    fn wait_for_notification(&self, status: &str) -> Notified {
        let found = poll(NOTIFY_TIMEOUT, || {
            self.receiver
                .received()
                .into_iter()
                .find_map(|notification| {
                    let alert = notification.body["alerts"]
                        .as_array()?
                        .iter()
                        .find(|alert| {
                            alert["labels"]["alertname"] == ALERT
                                && alert["labels"]["id"] == TUNNEL
                                && alert["status"] == status
                        })?
                        .clone();
                    Some(Notified {
                        notification,
                        alert,
                    })
                })
                .ok_or_else(|| "not yet".to_owned())
        });
        found.unwrap_or_else(|_| {
            panic!("no {status} notification of {ALERT} for {TUNNEL} within {NOTIFY_TIMEOUT:?}")
        })
    }

    /// What Prometheus and Alertmanager know, the notifications received, and the logs.
    fn diagnostics(&self) -> String {
        let mut out = String::from("\n======== diagnostics ========\n");
        let prom = &self.prometheus;
        section(
            &mut out,
            "Prometheus targets",
            prom.api("/api/v1/targets"),
            |data| {
                data["activeTargets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect()
            },
        );
        section(
            &mut out,
            "Prometheus rules",
            prom.api("/api/v1/rules"),
            |data| {
                data["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|group| group["rules"].as_array().into_iter().flatten())
                    .map(|r| {
                        format!(
                            "{} health={} state={} {}",
                            r["name"], r["health"], r["state"], r["lastError"]
                        )
                    })
                    .collect()
            },
        );
        section(
            &mut out,
            "Prometheus alerts",
            prom.api("/api/v1/alerts"),
            |data| {
                data["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| format!("{} {}", a["state"], a["labels"]))
                    .collect()
            },
        );
        let am_alerts = http_get(&self.alertmanager.url("/api/v2/alerts"))
            .and_then(|(_, body)| serde_json::from_str(&body).map_err(|e| e.to_string()));
        section(
            &mut out,
            "Alertmanager alerts",
            am_alerts,
            |alerts: Json| {
                alerts
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| format!("{} {}", a["status"]["state"], a["labels"]))
                    .collect()
            },
        );
        let _ = writeln!(out, "--- notifications received");
        for notification in self.receiver.received() {
            let _ = writeln!(out, "POST {} {}", notification.path, notification.body);
        }
        let _ = writeln!(out, "--- Prometheus log\n{}", prom.log_tail(40));
        let _ = writeln!(
            out,
            "--- Alertmanager log\n{}",
            self.alertmanager.log_tail(40)
        );
        let _ = writeln!(out, "--- exporter log\n{}", tail(&self.exporter.logs(), 40));
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// Appends a titled section with `lines(data)`, or the error that kept `data` from being
/// read.
fn section<T>(
    out: &mut String,
    title: &str,
    data: Result<T, String>,
    lines: impl FnOnce(T) -> Vec<String>,
) {
    let _ = writeln!(out, "--- {title}");
    match data {
        Ok(data) => {
            for line in lines(data) {
                let _ = writeln!(out, "{line}");
            }
        }
        Err(error) => {
            let _ = writeln!(out, "unavailable: {error}");
        }
    }
}

/// A notification that carries the followed alert.
struct Notified {
    notification: Notification,
    alert: Json,
}

/// The values the test's events and names file give the dashboard's variables. The name of
/// the silent tunnel comes from `localtonet_unreported`.
fn expected_variable_values() -> BTreeMap<&'static str, BTreeSet<String>> {
    let set = |values: &[&str]| values.iter().map(|v| v.to_string()).collect();
    BTreeMap::from([
        ("type", set(&["token", "tunnel"])),
        ("group", set(&[TUNNEL_GROUP, OTHER_GROUP])),
        (
            "name",
            set(&[TUNNEL_NAME, FLAPPER_NAME, TOKEN_NAME, SILENT_TUNNEL_NAME]),
        ),
    ])
}

/// The Disconnected events the test sends, by type and id: one for the tunnel that goes
/// down (its first event), three for the flapper (the first is its first event), one each
/// for the named token and the anonymous tunnel (out of order), none for the anonymous
/// token.
fn expected_disconnects() -> BTreeMap<(String, String), u32> {
    let anonymous_token = localtonet_exporter::fingerprint::of(ANONYMOUS_TOKEN);
    [
        ("tunnel", TUNNEL, 1),
        ("tunnel", FLAPPER, 3),
        ("token", SAMPLE_FINGERPRINT, 1),
        ("tunnel", ANONYMOUS_TUNNEL, 1),
        ("token", anonymous_token.as_str(), 0),
    ]
    .into_iter()
    .map(|(kind, id, count)| ((kind.to_owned(), id.to_owned()), count))
    .collect()
}

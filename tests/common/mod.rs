//! Test harness: runs the real `localtonet-exporter` binary and talks HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sample payload from Localtonet's documentation.
pub const SAMPLE: &str = concat!(
    r#"{"Id": "9xknivVmUWwu1dqBOHRybM78", "ActionDate": "2024-04-29T12:35:17.154580", "#,
    r#""Type": "Token", "Status": "Disconnected"}"#
);
/// The authtoken in [`SAMPLE`].
pub const SAMPLE_TOKEN: &str = "9xknivVmUWwu1dqBOHRybM78";
/// Its fingerprint (`printf %s 9xknivVmUWwu1dqBOHRybM78 | sha256sum | cut -c1-16`).
pub const SAMPLE_FINGERPRINT: &str = "3b8f0e6747ce707b";

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_localtonet-exporter")
}

/// Path of a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reads a fixture file.
pub fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A running exporter. Killed when dropped.
pub struct Exporter {
    child: Child,
    pub address: String,
    pub scheme: &'static str,
    logs: Arc<Mutex<String>>,
    pub dir: Arc<tempfile::TempDir>,
    args: Vec<String>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Exporter {
    /// Starts the exporter with a fresh store in a temporary folder and the given flags.
    pub fn start(args: &[&str]) -> Exporter {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Exporter::start_in(dir, args)
    }

    /// Starts the exporter with `dir` as working folder (the default store lives there).
    pub fn start_in(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Exporter {
        Exporter::try_start_in(dir, args)
            .unwrap_or_else(|logs| panic!("exporter did not start:\n{logs}"))
    }

    /// Like [`Exporter::start_in`], but returns the logs when the exporter exits or does not
    /// start listening within 20 seconds.
    pub fn try_start_in(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Result<Exporter, String> {
        Exporter::try_start_with_env(dir, args, &[])
    }

    /// Like [`Exporter::try_start_in`], with environment variables for the exporter.
    pub fn try_start_with_env(
        dir: Arc<tempfile::TempDir>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Exporter, String> {
        let mut all_args: Vec<String> = vec!["--web.listen-address=127.0.0.1:0".into()];
        all_args.extend(args.iter().map(|a| a.to_string()));
        let mut child = Command::new(binary())
            .args(&all_args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn exporter");

        let logs = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("msg=listening")
                    || line.contains("message=listening")
                    || line.contains("\"message\":\"listening\"")
                {
                    let tls = line.contains("tls=true") || line.contains("\"tls\":true");
                    if let Some(address) = field(&line, "address") {
                        let _ = address_tx.send((address, tls));
                    }
                }
                let mut logs = sink.lock().expect("logs");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut logs = sink.lock().expect("logs");
                logs.push_str(&line);
                logs.push('\n');
            }
        });

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((address, tls)) = address_rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Exporter {
                    child,
                    address,
                    scheme: if tls { "https" } else { "http" },
                    logs,
                    dir,
                    args: args.iter().map(|a| a.to_string()).collect(),
                });
            }
            if let Ok(Some(_)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(logs.lock().expect("logs").clone());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(logs.lock().expect("logs").clone());
            }
        }
    }

    /// Kills the exporter with SIGKILL and starts it again on the same folder and flags.
    pub fn crash_and_restart(mut self) -> Exporter {
        self.kill9();
        Exporter::start_in(Arc::clone(&self.dir), &self.arg_refs())
    }

    /// Stops the exporter with SIGTERM, waits for it, and starts it again.
    pub fn restart(mut self) -> Exporter {
        let status = self.terminate();
        assert!(
            status.success(),
            "graceful stop failed: {status:?}\n{}",
            self.logs()
        );
        Exporter::start_in(Arc::clone(&self.dir), &self.arg_refs())
    }

    fn arg_refs(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and waits.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (TERM, HUP, INT) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits for the exit status (at most 20 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "exporter did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the exporter logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// Waits until the logs contain `text` (at most `timeout`).
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.address, path)
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        request(
            &agent(),
            "POST",
            &self.url(path),
            Some(body.as_bytes()),
            &[],
        )
    }

    pub fn post_with(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
        request(&agent(), "POST", &self.url(path), Some(body), headers)
    }

    pub fn get(&self, path: &str) -> Answer {
        request(&agent(), "GET", &self.url(path), None, &[])
    }

    pub fn delete(&self, path: &str) -> Answer {
        request(&agent(), "DELETE", &self.url(path), None, &[])
    }

    /// Posts to the webhook and asserts a 200.
    pub fn send(&self, body: &str) -> serde_json::Value {
        let answer = self.post("/webhook", body);
        assert_eq!(answer.status, 200, "webhook refused: {}", answer.body);
        answer.json()
    }

    /// A scrape of /metrics.
    pub fn scrape(&self) -> Scrape {
        let answer = self.get("/metrics");
        assert_eq!(answer.status, 200, "scrape failed: {}", answer.body);
        Scrape(answer.body)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `key=value` or `key="value"` from a logfmt line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split_whitespace().next()?,
    };
    Some(value.to_string())
}

/// A plain-HTTP agent that does not treat 4xx/5xx as errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Sends one request and collects the answer; panics when there is none.
pub fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Answer {
    try_request(agent, method, url, body, headers).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one request and collects the answer, or says why there is none.
pub fn try_request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Answer, ureq::Error> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let result = match body {
        Some(body) => agent.run(builder.body(body.to_vec()).expect("request")),
        None => agent.run(builder.body(()).expect("request")),
    };
    let mut response = result?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()?;
    Ok(Answer {
        status,
        body,
        headers,
    })
}

/// The text of one scrape.
pub struct Scrape(pub String);

impl Scrape {
    /// The value of the series `name{labels}` where `labels` is the exact label text, e.g.
    /// `type="token",id="3b8f0e6747ce707b"`.
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        let prefix = if labels.is_empty() {
            format!("{name} ")
        } else {
            format!("{name}{{{labels}}} ")
        };
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}: bad value {v:?}: {e}"))
            })
    }

    /// Sum of every series of `name` whose label text contains `contains`.
    pub fn sum(&self, name: &str, contains: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(contains))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn contains(&self, text: &str) -> bool {
        self.0.contains(text)
    }
}

/// Runs `promtool check metrics` on a scrape; returns its combined output.
pub fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is not installed ({e}): run ./scripts/test.sh, which installs it")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write scrape");
    let output = child.wait_with_output().expect("promtool");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A Localtonet event body.
pub fn event(kind: &str, id: &str, status: &str, at: &str) -> String {
    serde_json::json!({ "Id": id, "ActionDate": at, "Type": kind, "Status": status }).to_string()
}

/// Writes a file into the exporter's folder and returns its path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write file");
    path
}

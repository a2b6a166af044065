//! Prometheus and Alertmanager as child processes, and the HTTP calls the test makes to them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::POLL;

/// How to get the tools, printed when one is missing.
const INSTALL_HINT: &str = "run ./scripts/test.sh, which installs it (Debian packages \
     `prometheus` and `prometheus-alertmanager`)";

/// Longest wait for Prometheus or Alertmanager to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The first of `names` found on PATH.
pub fn tool(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{}` is not installed or not on PATH: {INSTALL_HINT}",
                names[0]
            )
        })
}

/// A GET that reports failures instead of panicking, so that it can be used while a panic
/// unwinds. Returns the status and body.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    Ok((status, body))
}

/// A port that was free a moment ago. Another process may take it before ours binds it;
/// [`Daemon::start`] retries then.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind a free port")
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One sample of an instant query.
pub struct Sample {
    /// The labels of its series (an empty object for a scalar).
    pub metric: Json,
    pub value: f64,
}

/// A Prometheus or Alertmanager process started by the test, killed when dropped.
pub struct Daemon {
    name: &'static str,
    child: Child,
    pub address: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program` with `args(listen address)` on a free loopback port, and waits until
    /// it is ready and `identity.0` answers with a body containing `identity.1` (so that it is
    /// our process that answers, not one that took the port first). Retries on another port
    /// when the port was taken.
    pub fn start(
        name: &'static str,
        program: &Path,
        dir: &Path,
        args: impl Fn(&str) -> Vec<String>,
        identity: (&str, &str),
    ) -> Daemon {
        for attempt in 1..=5 {
            let address = format!("127.0.0.1:{}", free_port());
            let log = dir.join(format!("{name}-{attempt}.log"));
            let file = std::fs::File::create(&log).expect("create log file");
            let child = Command::new(program)
                .args(args(&address))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log file"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            let mut daemon = Daemon {
                name,
                child,
                address,
                log,
            };
            match daemon.wait_ready(identity) {
                Ok(true) => return daemon,
                Ok(false) => eprintln!("{name}: port {} was taken, retrying", daemon.address),
                Err(error) => panic!("{name} did not start: {error}\n{}", daemon.log_tail(60)),
            }
        }
        panic!(
            "{name}: 5 attempts failed: each port was taken, or {} never answered with {}",
            identity.0, identity.1
        );
    }

    /// `Ok(true)` once ready, `Ok(false)` if the port belongs to another process.
    fn wait_ready(&mut self, (path, expected): (&str, &str)) -> Result<bool, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log_tail(20);
                return if log.contains("address already in use") {
                    Ok(false)
                } else {
                    Err(format!("exited with {status}"))
                };
            }
            if let Ok((200, _)) = http_get(&self.url("/-/ready")) {
                let (_, body) = http_get(&self.url(path))?;
                return Ok(body.contains(expected));
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {START_TIMEOUT:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => tail(&text, lines),
            Err(e) => format!("({} log unreadable: {e})", self.name),
        }
    }

    /// The `data` of a successful Prometheus API answer.
    pub fn api(&self, path_and_query: &str) -> Result<Json, String> {
        let (status, body) = http_get(&self.url(path_and_query))?;
        let answer: Json = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!(
                "HTTP {status}: {} {}",
                answer["errorType"], answer["error"]
            ))
        }
    }

    /// An instant query at the current time.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        self.instant_query(&[("query", expr)])
    }

    /// An instant query at `at` (Unix seconds; milliseconds are kept).
    pub fn query_at(&self, expr: &str, at: f64) -> Result<Vec<Sample>, String> {
        self.instant_query(&[("query", expr), ("time", &format!("{at:.3}"))])
    }

    fn instant_query(&self, params: &[(&str, &str)]) -> Result<Vec<Sample>, String> {
        let data = self.api(&format!("/api/v1/query?{}", encode(params)))?;
        let value = |v: &Json| -> Result<f64, String> {
            v[1].as_str()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| format!("unexpected sample {v}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sample| {
                    value(&sample["value"]).map(|value| Sample {
                        metric: sample["metric"].clone(),
                        value,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                metric: Json::Object(Default::default()),
                value: value(&data["result"])?,
            }]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

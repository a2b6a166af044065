//! Every query and template variable of the Grafana dashboards, run against Prometheus as
//! Grafana would run them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

use super::daemon::{Daemon, encode};
use super::{poll, repo};

/// Longest wait for every query to return data.
const DASHBOARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Values Grafana puts in place of its built-in variables when the dashboard shows the last
/// hour with Prometheus scraping every 15 seconds.
const BUILTIN_VARIABLES: [(&str, &str); 7] = [
    ("__rate_interval", "1m"),
    ("__rate_interval_ms", "60000"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
];

/// Evaluates every panel query and template variable of every dashboard in
/// `grafana/dashboards/` until all return data or [`DASHBOARD_TIMEOUT`] has passed, and
/// fails with every one that did not. A query that Prometheus refuses fails at once.
pub fn check_dashboards(prometheus: &Daemon, expected: &BTreeMap<&str, BTreeSet<String>>) {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());

    for file in files {
        let text = std::fs::read_to_string(&file).expect("read dashboard");
        let dashboard: Json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let checked = poll(DASHBOARD_TIMEOUT, || {
            let mut findings = Findings::default();
            check_panel_queries(prometheus, &dashboard, &mut findings);
            check_variables(prometheus, &dashboard, expected, &mut findings);
            if findings.errors.is_empty() && !findings.missing.is_empty() {
                Err(findings.missing.join("\n"))
            } else {
                Ok(findings)
            }
        });
        let failures = match checked {
            Ok(findings) => [findings.errors, findings.missing].concat().join("\n"),
            Err(missing) => missing,
        };
        assert!(
            failures.is_empty(),
            "{}: queries that fail or return no data:\n{failures}",
            file.display()
        );
    }
}

/// A dashboard query that counts Disconnected events over a window.
struct CountQuery {
    panel: &'static str,
    ref_id: &'static str,
    /// The window as the query writes it: a Grafana variable or a literal duration.
    window: &'static str,
    /// One sample with the sum over every id, rather than one per id.
    total: bool,
}

const COUNT_QUERIES: [CountQuery; 4] = [
    CountQuery {
        panel: "Disconnects in range",
        ref_id: "A",
        window: "$__range",
        total: true,
    },
    CountQuery {
        panel: "Top flappers",
        ref_id: "A",
        window: "$__range",
        total: false,
    },
    CountQuery {
        panel: "Status",
        ref_id: "C",
        window: "24h",
        total: false,
    },
    CountQuery {
        panel: "Disconnects",
        ref_id: "A",
        window: "$__rate_interval",
        total: false,
    },
];

/// Evaluates the dashboard queries that count Disconnected events, with every picker on All,
/// over the window from `window_start` (Unix milliseconds) to now, and fails unless each
/// finds exactly `expected` events per id (by `type` and `id`), or their sum for a total.
///
/// The window replaces the query's own (`$__range`, `$__rate_interval`, `24h`). Prometheus
/// is seconds old: over a window that starts before its first scrape the queries cannot
/// tell a new id from one that was never scraped, and count with `increase()` alone (see
/// grafana/README.md). `window_start` is the time of a stored scrape taken before the first
/// event, as the start of a window on a long-running Prometheus would be.
pub fn check_disconnect_counts(
    prometheus: &Daemon,
    window_start: u64,
    expected: &BTreeMap<(String, String), u32>,
) {
    let path = repo().join("grafana/dashboards/localtonet.json");
    let text = std::fs::read_to_string(&path).expect("read dashboard");
    let dashboard: Json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let variables = dashboard_variables(&dashboard);
    let queries = panel_queries(&dashboard);
    let total: u32 = expected.values().sum();

    let checked = poll(DASHBOARD_TIMEOUT, || {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        let window = format!("{}ms", now - window_start);
        let mut wrong = Vec::new();
        for count in &COUNT_QUERIES {
            let label = format!("panel {:?} query {}", count.panel, count.ref_id);
            let Some(query) = queries
                .iter()
                .find(|q| q.panel == count.panel && q.ref_id == count.ref_id)
            else {
                wrong.push(format!("{label}: not in the dashboard"));
                continue;
            };
            if !query.expr.contains(count.window) {
                wrong.push(format!("{label}: does not count over {}", count.window));
                continue;
            }
            let expr = substitute(&query.expr.replace(count.window, &window), &variables)?;
            let samples = prometheus
                .query_at(&expr, now as f64 / 1000.0)
                .map_err(|e| format!("{label}: {e}\n    {expr}"))?;
            let found: BTreeMap<(String, String), f64> = samples
                .iter()
                .map(|sample| {
                    let get = |name: &str| sample.metric[name].as_str().unwrap_or("").to_owned();
                    ((get("type"), get("id")), sample.value)
                })
                .collect();
            let right = if count.total {
                samples.len() == 1 && samples[0].value == f64::from(total)
            } else {
                found.len() == samples.len()
                    && found.len() == expected.len()
                    && expected
                        .iter()
                        .all(|(id, &value)| found.get(id) == Some(&f64::from(value)))
            };
            if !right {
                let wanted = if count.total {
                    format!("{total} in total")
                } else {
                    format!("{expected:?}")
                };
                wrong.push(format!(
                    "{label} over {window}: found {found:?}, expected {wanted}\n    {expr}"
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("\n"))
        }
    });
    if let Err(wrong) = checked {
        panic!("disconnect counts differ from the events sent:\n{wrong}");
    }
}

/// Records every panel query that fails, returns nothing, returns only NaN, or returns
/// only its `or vector(0)` fallback.
fn check_panel_queries(prometheus: &Daemon, dashboard: &Json, findings: &mut Findings) {
    let variables = dashboard_variables(dashboard);
    for query in panel_queries(dashboard) {
        let label = format!("panel {:?} query {}", query.panel, query.ref_id);
        let expr = match substitute(&query.expr, &variables) {
            Ok(expr) => expr,
            Err(error) => {
                findings.errors.push(format!("{label}: {error}"));
                continue;
            }
        };
        let mut checks = vec![(expr.clone(), "")];
        if let Some(main) = strip_zero_fallback(&expr) {
            checks.push((main, " without its `or vector(0)` fallback"));
        }
        for (expr, what) in checks {
            match prometheus.query(&expr) {
                Err(error) => findings
                    .errors
                    .push(format!("{label}{what}: {error}\n    {expr}")),
                Ok(samples) if samples.is_empty() => findings
                    .missing
                    .push(format!("{label}{what}: no data\n    {expr}")),
                Ok(samples) if samples.iter().all(|s| s.value.is_nan()) => findings
                    .missing
                    .push(format!("{label}{what}: only NaN\n    {expr}")),
                Ok(_) => {}
            }
        }
    }
}

/// Records every query variable whose values cannot be read, are empty, or differ from
/// `expected` (by variable name).
fn check_variables(
    prometheus: &Daemon,
    dashboard: &Json,
    expected: &BTreeMap<&str, BTreeSet<String>>,
    findings: &mut Findings,
) {
    let variables = dashboard_variables(dashboard);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("(unnamed)");
        let label = format!("variable {name:?}");
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .or_else(|| variable["definition"].as_str())
            .unwrap_or_default();
        let values =
            substitute(query, &variables).and_then(|query| label_values(prometheus, &query));
        match values {
            Err(error) => findings
                .errors
                .push(format!("{label}: {error}\n    {query}")),
            Ok(values) if values.is_empty() => findings
                .missing
                .push(format!("{label}: no values\n    {query}")),
            Ok(values) => {
                if let Some(wanted) = expected.get(name).filter(|wanted| **wanted != values) {
                    findings
                        .missing
                        .push(format!("{label}: values {values:?}, expected {wanted:?}"));
                }
            }
        }
    }
}

/// The values of a Grafana `label_values(selector, label)` or `label_values(label)`
/// variable query, read as Grafana does from `/api/v1/label/<label>/values`.
fn label_values(prometheus: &Daemon, query: &str) -> Result<BTreeSet<String>, String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported variable query form: {query}"))?;
    let (selector, label) = match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, inner.trim()),
    };
    let mut path = format!("/api/v1/label/{label}/values");
    if let Some(selector) = selector {
        path = format!("{path}?{}", encode(&[("match[]", selector)]));
    }
    let data = prometheus.api(&path)?;
    Ok(data
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

/// What a look at a dashboard's queries found: queries Prometheus refused (waiting will not
/// help) and queries without data (yet).
#[derive(Default)]
struct Findings {
    errors: Vec<String>,
    missing: Vec<String>,
}

/// One query of one panel.
struct PanelQuery {
    panel: String,
    ref_id: String,
    expr: String,
}

/// Every query of every panel, panels nested in rows included.
fn panel_queries(dashboard: &Json) -> Vec<PanelQuery> {
    fn walk(panels: &Json, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(PanelQuery {
                        panel: title.to_owned(),
                        ref_id: target["refId"].as_str().unwrap_or("?").to_owned(),
                        expr: expr.to_owned(),
                    });
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    assert!(!out.is_empty(), "the dashboard has no queries");
    out
}

/// The value each dashboard variable takes: All (its `allValue`, else `.*`) for query and
/// custom variables, the plugin for the data source variable, and Grafana's built-ins.
fn dashboard_variables(dashboard: &Json) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = BUILTIN_VARIABLES
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        let value = match variable["type"].as_str() {
            Some("datasource") => variable["query"].as_str().unwrap_or("prometheus"),
            Some("constant") => variable["query"].as_str().unwrap_or_default(),
            Some("interval") => "1m",
            _ => variable["allValue"]
                .as_str()
                .filter(|v| !v.is_empty())
                .unwrap_or(".*"),
        };
        values.insert(name.to_owned(), value.to_owned());
    }
    values
}

/// Replaces Grafana's variable forms `$name`, `${name}`, `${name:format}` and `[[name]]` by
/// their values. Unknown names are left as they are, as Grafana does (`$1` in a
/// `label_replace`), except unknown built-ins (`$__...`), which are an error.
fn substitute(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['$', '[']) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (name, whole) = if let Some(braced) = tail.strip_prefix("${") {
            match braced.find('}') {
                Some(end) => (
                    braced[..end].split([':', '.']).next().unwrap_or(""),
                    end + 3,
                ),
                None => ("", 1),
            }
        } else if let Some(bracketed) = tail.strip_prefix("[[") {
            match bracketed.find("]]") {
                Some(end) => (bracketed[..end].split(':').next().unwrap_or(""), end + 4),
                None => ("", 1),
            }
        } else if let Some(word) = tail.strip_prefix('$') {
            let end = word.find(|c: char| !is_word(c)).unwrap_or(word.len());
            (&word[..end], end + 1)
        } else {
            ("", 1)
        };
        match values.get(name) {
            Some(value) if !name.is_empty() => out.push_str(value),
            _ if name.starts_with("__") => {
                return Err(format!("unknown Grafana built-in variable ${name}"));
            }
            _ => out.push_str(&tail[..whole]),
        }
        rest = &tail[whole..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The query without a trailing `or vector(0)`, if it has one.
fn strip_zero_fallback(expr: &str) -> Option<String> {
    let compact: String = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    compact
        .strip_suffix(" or vector(0)")
        .map(|main| main.trim().to_owned())
}

#[test]
fn grafana_variables_are_substituted_in_every_form() {
    let values = BTreeMap::from([
        ("type".to_owned(), ".*".to_owned()),
        ("__rate_interval".to_owned(), "1m".to_owned()),
    ]);
    assert_eq!(
        substitute(r#"rate(x{type=~"$type"}[$__rate_interval])"#, &values).as_deref(),
        Ok(r#"rate(x{type=~".*"}[1m])"#)
    );
    assert_eq!(
        substitute(
            r#"x{a=~"${type}",b=~"${type:regex}",c=~"[[type]]"}"#,
            &values
        )
        .as_deref(),
        Ok(r#"x{a=~".*",b=~".*",c=~".*"}"#)
    );
    assert_eq!(
        substitute(r#"label_replace(x, "a", "$1", "b", "(.*)")[5m]"#, &values).as_deref(),
        Ok(r#"label_replace(x, "a", "$1", "b", "(.*)")[5m]"#)
    );
    assert!(substitute("x[$__unknown]", &values).is_err());
    assert_eq!(
        strip_zero_fallback("count(x == 0)  or\n vector(0)").as_deref(),
        Some("count(x == 0)")
    );
}

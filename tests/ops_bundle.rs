//! Checks of the operations bundle: `prometheus.yml`, the alerting rules in
//! `prometheus/alerts.yml` and their unit tests, `alertmanager/alertmanager.yml`, and the
//! Grafana dashboard with its provisioning files.
//!
//! The configuration checks run the real `promtool` and `amtool`. A missing tool fails the
//! test with a message saying how to install it; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// How to get the tools, printed when one is missing.
const INSTALL_HINT: &str = "run the project's test script `.ci/run`, which installs it, or \
     install the Debian packages `prometheus` (promtool) and `prometheus-alertmanager` (amtool)";

/// Every shipped dashboard's uid starts with this.
const UID_PREFIX: &str = "localtonet-exporter";

/// Grafana's limit on the length of a dashboard uid.
const UID_MAX_LEN: usize = 40;

/// Metrics that carry the per-id labels `type`, `id`, `name` and `group`.
const PER_ID_METRICS: [&str; 5] = [
    "localtonet_connected",
    "localtonet_connects_total",
    "localtonet_disconnects_total",
    "localtonet_last_change_timestamp_seconds",
    "localtonet_unreported",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    serde_yaml_ng::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
}

fn json(path: &Path) -> Json {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Runs `tool args` in the repository root and returns its stdout and stderr together,
/// failing the test if the tool is missing or exits non-zero.
fn run_tool(tool: &str, args: &[&str]) -> String {
    let output = match Command::new(tool).args(args).current_dir(repo()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{tool}` is not installed or not on PATH: {INSTALL_HINT}")
        }
        Err(e) => panic!("cannot run `{tool}`: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "`{tool} {}` failed ({}):\n{text}",
        args.join(" "),
        output.status
    );
    text
}

fn assert_no_warnings(command: &str, output: &str) {
    let lower = output.to_lowercase();
    assert!(
        !lower.contains("warn") && !lower.contains("lint"),
        "`{command}` printed warnings:\n{output}"
    );
}

#[test]
fn prometheus_config_passes_promtool_check_config() {
    let output = run_tool("promtool", &["check", "config", "prometheus.yml"]);
    assert_no_warnings("promtool check config prometheus.yml", &output);
}

#[test]
fn prometheus_config_scrapes_the_exporter_as_job_localtonet_and_loads_the_rules() {
    let config = yaml("prometheus.yml");
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs is a list");
    let job = jobs
        .iter()
        .find(|job| job["job_name"].as_str() == Some("localtonet"))
        .expect("prometheus.yml has a scrape job named `localtonet`");
    let targets: Vec<&str> = job["static_configs"][0]["targets"]
        .as_sequence()
        .expect("the localtonet job has static targets")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(targets, ["localhost:9877"]);
    let rule_files: Vec<&str> = config["rule_files"]
        .as_sequence()
        .expect("rule_files is a list")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(rule_files, ["prometheus/alerts.yml"]);
}

#[test]
fn alert_rules_pass_promtool_check_rules_without_warnings() {
    let output = run_tool("promtool", &["check", "rules", "prometheus/alerts.yml"]);
    assert_no_warnings("promtool check rules prometheus/alerts.yml", &output);
}

#[test]
fn alert_rule_unit_tests_pass_promtool_test_rules() {
    run_tool("promtool", &["test", "rules", "prometheus/alerts.test.yml"]);
}

#[test]
fn alertmanager_config_passes_amtool_check_config() {
    run_tool("amtool", &["check-config", "alertmanager/alertmanager.yml"]);
}

/// Every alerting rule in alerts.yml, by alert name.
fn alert_rules() -> BTreeMap<String, Yaml> {
    let rules = yaml("prometheus/alerts.yml");
    let mut alerts = BTreeMap::new();
    for group in rules["groups"]
        .as_sequence()
        .expect("alerts.yml has groups")
    {
        for rule in group["rules"].as_sequence().expect("every group has rules") {
            if let Some(name) = rule["alert"].as_str() {
                let previous = alerts.insert(name.to_owned(), rule.clone());
                assert!(previous.is_none(), "alert {name} is defined twice");
            }
        }
    }
    assert!(!alerts.is_empty(), "alerts.yml defines no alert");
    alerts
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_description() {
    for (name, rule) in alert_rules() {
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning" | "info")),
            "alert {name}: label severity must be critical, warning or info, not {severity:?}"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or("");
            assert!(
                !text.trim().is_empty(),
                "alert {name} has no annotation {annotation}"
            );
        }
    }
}

#[test]
fn per_id_alerts_name_the_id_by_its_name_falling_back_to_its_id() {
    for (name, rule) in alert_rules() {
        let expr = rule["expr"].as_str().unwrap_or("");
        if !PER_ID_METRICS.iter().any(|metric| expr.contains(metric)) {
            continue;
        }
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or("");
            assert!(
                text.contains("{{ with $labels.name }}") && text.contains("$labels.id"),
                "alert {name}: annotation {annotation} must show `name`, or `id` when the id \
                 has no name ({{{{ with $labels.name }}}}...{{{{ else }}}}...{{{{ end }}}})"
            );
        }
    }
}

#[test]
fn every_alert_is_unit_tested_both_firing_and_silent() {
    let tests = yaml("prometheus/alerts.test.yml");
    let rule_files = tests["rule_files"]
        .as_sequence()
        .expect("alerts.test.yml has rule_files");
    assert_eq!(rule_files, &[Yaml::from("alerts.yml")]);

    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in tests["tests"]
        .as_sequence()
        .expect("alerts.test.yml has tests")
    {
        let Some(cases) = test["alert_rule_test"].as_sequence() else {
            continue;
        };
        for case in cases {
            let alert = case["alertname"]
                .as_str()
                .expect("alert_rule_test has an alertname");
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                silent.insert(alert.to_owned());
            } else {
                firing.insert(alert.to_owned());
            }
        }
    }

    let alerts: BTreeSet<String> = alert_rules().into_keys().collect();
    let unknown: Vec<_> = firing
        .union(&silent)
        .filter(|a| !alerts.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "alerts.test.yml tests alerts that do not exist: {unknown:?}"
    );
    let never_firing: Vec<_> = alerts.difference(&firing).collect();
    assert!(
        never_firing.is_empty(),
        "no test shows these alerts firing: {never_firing:?}"
    );
    let never_silent: Vec<_> = alerts.difference(&silent).collect();
    assert!(
        never_silent.is_empty(),
        "no test shows these alerts silent: {never_silent:?}"
    );
}

/// A dashboard in its two forms: the provisioned file `grafana/dashboards/<stem>.json` and
/// the UI import file `grafana/<stem>-import.json`.
struct Dashboard {
    provisioned: PathBuf,
    import: PathBuf,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join("grafana/dashboards");
    let mut found: Vec<Dashboard> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|provisioned| {
            let stem = provisioned
                .file_stem()
                .expect("file name")
                .to_string_lossy();
            let import = repo().join(format!("grafana/{stem}-import.json"));
            Dashboard {
                provisioned,
                import,
            }
        })
        .collect();
    found.sort_by(|a, b| a.provisioned.cmp(&b.provisioned));
    assert!(!found.is_empty(), "no dashboard in {}", dir.display());
    found
}

/// Every string anywhere in a JSON document.
fn strings(value: &Json) -> Vec<&str> {
    match value {
        Json::String(s) => vec![s.as_str()],
        Json::Array(items) => items.iter().flat_map(strings).collect(),
        Json::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn variable<'a>(dashboard: &'a Json, name: &str) -> Option<&'a Json> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

#[test]
fn dashboards_are_valid_json_with_a_unique_project_prefixed_uid() {
    let mut seen = BTreeMap::new();
    for dashboard in dashboards() {
        let provisioned = json(&dashboard.provisioned);
        let import = json(&dashboard.import);
        let uid = provisioned["uid"].as_str().unwrap_or("");
        let file = dashboard.provisioned.display().to_string();
        assert!(
            uid.starts_with(UID_PREFIX),
            "{file}: uid {uid:?} must start with {UID_PREFIX}"
        );
        assert!(
            uid.len() <= UID_MAX_LEN,
            "{file}: uid {uid:?} is over {UID_MAX_LEN} characters"
        );
        assert_eq!(
            import["uid"],
            uid,
            "{}: uid differs",
            dashboard.import.display()
        );
        if let Some(other) = seen.insert(uid.to_owned(), file.clone()) {
            panic!("{file} and {other} have the same uid {uid:?}");
        }
    }
}

#[test]
fn dashboards_state_their_minimum_grafana_version_as_the_readme_does() {
    let readme = read("grafana/README.md");
    for dashboard in dashboards() {
        for path in [&dashboard.provisioned, &dashboard.import] {
            let requires = json(path)["__requires"].clone();
            let version = requires
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["id"] == "grafana")
                .and_then(|r| r["version"].as_str())
                .unwrap_or_else(|| panic!("{}: no grafana entry in __requires", path.display()))
                .to_owned();
            let major_minor = version
                .rsplit_once('.')
                .map_or(version.as_str(), |(mm, _)| mm);
            assert!(
                readme.contains(&format!("Grafana {major_minor} or newer")),
                "grafana/README.md must say \"Grafana {major_minor} or newer\" like {}",
                path.display()
            );
        }
    }
}

#[test]
fn provisioned_dashboards_select_the_data_source_through_a_variable() {
    for dashboard in dashboards() {
        let file = dashboard.provisioned.display().to_string();
        let provisioned = json(&dashboard.provisioned);
        let datasource = variable(&provisioned, "datasource")
            .unwrap_or_else(|| panic!("{file}: no template variable named `datasource`"));
        assert_eq!(
            datasource["type"], "datasource",
            "{file}: `datasource` variable type"
        );
        assert_eq!(
            datasource["query"], "prometheus",
            "{file}: `datasource` variable plugin"
        );
        assert!(
            provisioned.get("__inputs").is_none(),
            "{file}: __inputs is for UI import"
        );
        let placeholders: Vec<_> = strings(&provisioned)
            .into_iter()
            .filter(|s| s.contains("${DS_"))
            .collect();
        assert!(
            placeholders.is_empty(),
            "{file}: provisioning does not fill ${{DS_...}} placeholders: {placeholders:?}"
        );
    }
}

#[test]
fn import_dashboards_declare_every_data_source_input_they_use() {
    for dashboard in dashboards() {
        let file = dashboard.import.display().to_string();
        let import = json(&dashboard.import);
        let inputs = import["__inputs"]
            .as_array()
            .filter(|inputs| !inputs.is_empty())
            .unwrap_or_else(|| panic!("{file}: no __inputs for the UI import to ask about"));
        let declared: BTreeSet<String> = inputs
            .iter()
            .map(|input| {
                assert_eq!(input["type"], "datasource", "{file}: input {input}");
                assert_eq!(input["pluginId"], "prometheus", "{file}: input {input}");
                format!("${{{}}}", input["name"].as_str().expect("input has a name"))
            })
            .collect();
        let used: BTreeSet<String> = strings(&import)
            .into_iter()
            .filter(|s| s.starts_with("${DS_"))
            .map(str::to_owned)
            .collect();
        assert!(
            !used.is_empty(),
            "{file}: declares inputs but uses none of them"
        );
        assert_eq!(
            used, declared,
            "{file}: inputs used and inputs declared differ"
        );
    }
}

/// The dashboard with its data source plumbing removed: `__inputs` and the starting value
/// of the `datasource` variable.
fn without_datasource_plumbing(mut dashboard: Json) -> Json {
    if let Some(map) = dashboard.as_object_mut() {
        map.remove("__inputs");
    }
    if let Some(list) = dashboard["templating"]["list"].as_array_mut() {
        for variable in list.iter_mut().filter(|v| v["name"] == "datasource") {
            variable["current"] = Json::Object(Default::default());
        }
    }
    dashboard
}

#[test]
fn import_and_provisioned_dashboards_differ_only_in_data_source_plumbing() {
    for dashboard in dashboards() {
        let provisioned = without_datasource_plumbing(json(&dashboard.provisioned));
        let import = without_datasource_plumbing(json(&dashboard.import));
        assert!(
            provisioned == import,
            "{} and {} differ beyond __inputs and the datasource variable's current value; \
             regenerate the import file as grafana/README.md says",
            dashboard.provisioned.display(),
            dashboard.import.display()
        );
    }
}

#[test]
fn every_panel_queries_prometheus_through_the_datasource_variable() {
    let expected = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for dashboard in dashboards() {
        let file = dashboard.provisioned.display().to_string();
        let provisioned = json(&dashboard.provisioned);
        let mut ids = BTreeSet::new();
        for panel in panels(&provisioned)
            .into_iter()
            .filter(|p| p["type"] != "row")
        {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            assert!(
                ids.insert(panel["id"].to_string()),
                "{file}: panel id of {title:?} reused"
            );
            assert_eq!(
                panel["datasource"], expected,
                "{file}: datasource of panel {title:?}"
            );
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(
                !targets.is_empty(),
                "{file}: panel {title:?} has no targets"
            );
            let mut ref_ids = BTreeSet::new();
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or("");
                assert!(
                    !expr.trim().is_empty(),
                    "{file}: panel {title:?} has an empty query"
                );
                assert!(
                    ref_ids.insert(target["refId"].to_string()),
                    "{file}: {title:?} refId"
                );
                if let Some(datasource) = target.get("datasource") {
                    assert_eq!(datasource, &expected, "{file}: a query of panel {title:?}");
                }
            }
        }
    }
}

#[test]
fn per_id_panels_filter_by_type_group_and_name_and_keep_ids_without_them() {
    for dashboard in dashboards() {
        let file = dashboard.provisioned.display().to_string();
        let provisioned = json(&dashboard.provisioned);
        for name in ["type", "group", "name"] {
            let var = variable(&provisioned, name)
                .unwrap_or_else(|| panic!("{file}: no template variable named `{name}`"));
            assert_eq!(var["type"], "query", "{file}: variable {name}");
            assert_eq!(
                var["multi"], true,
                "{file}: variable {name} must allow several values"
            );
            assert_eq!(
                var["includeAll"], true,
                "{file}: variable {name} must offer All"
            );
            // `.*` also matches an absent label: ids with no name or group stay under All.
            assert_eq!(
                var["allValue"], ".*",
                "{file}: variable {name}: All must be `.*`"
            );
            let definition = var["definition"].as_str().unwrap_or("");
            assert!(
                definition.starts_with("label_values("),
                "{file}: variable {name}"
            );
        }
        for panel in panels(&provisioned) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or("");
                if !PER_ID_METRICS.iter().any(|metric| expr.contains(metric)) {
                    continue;
                }
                for matcher in [r#"type=~"$type""#, r#"group=~"$group""#, r#"name=~"$name""#] {
                    assert!(
                        expr.contains(matcher),
                        "{file}: panel {}: query lacks {matcher}: {expr}",
                        panel["title"]
                    );
                }
            }
        }
    }
}

#[test]
fn grafana_provisioning_files_define_a_prometheus_source_and_a_file_provider() {
    let datasources = yaml("grafana/provisioning/datasources/localtonet.yml");
    assert_eq!(datasources["apiVersion"], Yaml::from(1));
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert!(
        source["url"]
            .as_str()
            .is_some_and(|url| url.starts_with("http"))
    );

    let providers = yaml("grafana/provisioning/dashboards/localtonet.yml");
    assert_eq!(providers["apiVersion"], Yaml::from(1));
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert!(
        provider["options"]["path"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
}

/// A dashboard query that counts Disconnected events over a window.
struct CountQuery {
    panel: &'static str,
    ref_id: &'static str,
    /// The window as the query writes it: a Grafana variable, or a literal duration.
    window: &'static str,
    /// The window the promtool tests give it, in minutes.
    minutes: usize,
    /// One sample with the sum over every id, rather than one per id.
    total: bool,
    /// Evaluated at every step of a range: it looks only at the last scrape before its
    /// window, not at the 10 minutes before it.
    per_step: bool,
}

const COUNT_QUERIES: [CountQuery; 4] = [
    CountQuery {
        panel: "Disconnects in range",
        ref_id: "A",
        window: "$__range",
        minutes: 60,
        total: true,
        per_step: false,
    },
    CountQuery {
        panel: "Top flappers",
        ref_id: "A",
        window: "$__range",
        minutes: 60,
        total: false,
        per_step: false,
    },
    CountQuery {
        panel: "Status",
        ref_id: "C",
        window: "24h",
        minutes: 24 * 60,
        total: false,
        per_step: false,
    },
    CountQuery {
        panel: "Disconnects",
        ref_id: "A",
        window: "$__rate_interval",
        minutes: 8,
        total: false,
        per_step: true,
    },
];

/// Minute at which the window of every counting scenario starts; the scenarios run from
/// minute 0 to the end of the window.
const WINDOW_START: usize = 30;

/// One minute of an input series.
#[derive(Clone, Copy)]
enum Sample {
    Value(u32),
    /// A scrape that did not happen (Prometheus down): no sample.
    Missed,
    /// The staleness marker Prometheus writes when a scrape fails or a series leaves it.
    Stale,
}

/// An input series from minute 0 to `end` in promtool's notation.
fn samples(end: usize, at: impl Fn(usize) -> Sample) -> String {
    let words: Vec<String> = (0..=end)
        .map(|minute| match at(minute) {
            Sample::Value(value) => value.to_string(),
            Sample::Missed => "_".to_owned(),
            Sample::Stale => "stale".to_owned(),
        })
        .collect();
    words.join(" ")
}

/// `localtonet_disconnects_total` of one tunnel of the exporter the scenarios scrape.
fn disconnects_series(id: &str, name: Option<&str>) -> String {
    let name = name.map_or(String::new(), |name| format!(",name=\"{name}\""));
    format!(
        "localtonet_disconnects_total{{job=\"localtonet\",instance=\"localhost:9877\",\
         type=\"tunnel\",id=\"{id}\"{name}}}"
    )
}

const BUILD_INFO_SERIES: &str = "localtonet_exporter_build_info{job=\"localtonet\",\
     instance=\"localhost:9877\",version=\"0.1.0\",revision=\"abc\",rustc_version=\"1.85.0\"}";

/// The disconnects a query must count for one label set of an id.
struct Expected {
    id: &'static str,
    name: Option<&'static str>,
    count: u32,
    /// What a per-step query counts, where it differs.
    per_step: Option<u32>,
}

const fn expect(id: &'static str, name: Option<&'static str>, count: u32) -> Expected {
    Expected {
        id,
        name,
        count,
        per_step: None,
    }
}

/// Input series and what the counting queries must find at the end of the window.
struct Scenario {
    what: &'static str,
    series: Vec<(String, String)>,
    expected: Vec<Expected>,
}

/// The counting scenarios for a window of `minutes`, starting at [`WINDOW_START`]. Events
/// happen a quarter, a half and three quarters into the window.
fn count_scenarios(minutes: usize) -> Vec<Scenario> {
    use Sample::{Missed, Stale, Value};
    let start = WINDOW_START;
    let end = start + minutes;
    let quarter = start + minutes / 4;
    let half = start + minutes / 2;
    let three_quarters = start + minutes * 3 / 4;
    let series = |name: String, at: &dyn Fn(usize) -> Sample| (name, samples(end, at));

    let steady = Scenario {
        what: "old, new and renamed ids, every scrape successful",
        series: vec![
            series(BUILD_INFO_SERIES.to_owned(), &|_| Value(1)),
            // Long-lived, 100 disconnects before the window and 2 in it.
            series(disconnects_series("old", None), &|t| {
                Value(if t < half { 100 } else { 102 })
            }),
            // Appears in the window with a disconnect (at 1), then disconnects twice more.
            series(disconnects_series("new", None), &|t| match t {
                t if t < quarter => Missed,
                t if t < half => Value(1),
                _ => Value(3),
            }),
            // Appears with a connect (at 0), then disconnects once.
            series(disconnects_series("new-up", None), &|t| match t {
                t if t < quarter => Missed,
                t if t < half => Value(0),
                _ => Value(1),
            }),
            // Long-lived, renamed from a to b in the window, then disconnects once.
            series(disconnects_series("renamed", Some("a")), &|t| match t {
                t if t < quarter => Value(7),
                t if t == quarter => Stale,
                _ => Missed,
            }),
            series(disconnects_series("renamed", Some("b")), &|t| match t {
                t if t < quarter => Missed,
                t if t < half => Value(7),
                _ => Value(8),
            }),
            // Appears in the window (2 disconnects), is renamed, then disconnects once more:
            // counted once, under its new name.
            series(disconnects_series("new-renamed", Some("a")), &|t| match t {
                t if t < quarter => Missed,
                t if t < half => Value(2),
                t if t == half => Stale,
                _ => Missed,
            }),
            series(disconnects_series("new-renamed", Some("b")), &|t| match t {
                t if t < half => Missed,
                t if t < three_quarters => Value(2),
                _ => Value(3),
            }),
        ],
        expected: vec![
            expect("old", None, 2),
            expect("new", None, 3),
            expect("new-up", None, 1),
            expect("renamed", Some("a"), 0),
            expect("renamed", Some("b"), 1),
            expect("new-renamed", Some("b"), 3),
        ],
    };

    // Scrapes fail from 20 minutes before the window to a quarter into it.
    let gap = |stale: Sample| {
        move |t: usize| {
            if t == start - 20 {
                stale
            } else if (start - 20..quarter).contains(&t) {
                Missed
            } else {
                Value(1)
            }
        }
    };
    let long_gap = |what, stale: Sample| {
        let up = gap(stale);
        Scenario {
            what,
            series: vec![
                series(BUILD_INFO_SERIES.to_owned(), &up),
                // 100 disconnects before the gap, 1 after: counted 1, never 101.
                series(disconnects_series("old", None), &|t| match up(t) {
                    Value(_) => Value(if t < half { 100 } else { 101 }),
                    other => other,
                }),
                // Appears after the gap with 2 disconnects. No successful scrape in the 10
                // minutes before the window tells it from an old id, so increase() alone
                // counts it and misses them.
                series(disconnects_series("late", None), &|t| {
                    if t < half { Missed } else { Value(2) }
                }),
            ],
            expected: vec![expect("old", None, 1), expect("late", None, 0)],
        }
    };

    // Scrapes fail in the 3 minutes before the window; older ones succeeded.
    let short_gap = {
        let up = |t: usize| match t {
            t if t == start - 3 => Stale,
            t if (start - 3..=start).contains(&t) => Missed,
            _ => Value(1),
        };
        Scenario {
            what: "scrapes failing in the 3 minutes before the window",
            series: vec![
                series(BUILD_INFO_SERIES.to_owned(), &up),
                series(disconnects_series("old", None), &|t| match up(t) {
                    Value(_) => Value(if t < half { 100 } else { 102 }),
                    other => other,
                }),
                series(disconnects_series("new", None), &|t| match t {
                    t if t < quarter => Missed,
                    t if t < half => Value(1),
                    _ => Value(3),
                }),
            ],
            expected: vec![
                expect("old", None, 2),
                // The per-step query sees the failed scrape at the window start and falls
                // back to increase(), which misses the first disconnect.
                Expected {
                    per_step: Some(2),
                    ..expect("new", None, 3)
                },
            ],
        }
    };

    vec![
        steady,
        long_gap(
            "scrapes failing (staleness markers) from 20 minutes before the window",
            Stale,
        ),
        long_gap(
            "Prometheus down (no samples) from 20 minutes before the window",
            Missed,
        ),
        short_gap,
    ]
}

/// The expression of the query `ref_id` of the panel titled `panel` in `dashboard`.
fn panel_query(dashboard: &Json, panel: &str, ref_id: &str) -> Option<String> {
    panels(dashboard)
        .into_iter()
        .filter(|p| p["title"] == panel)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .find(|target| target["refId"] == ref_id)
        .and_then(|target| target["expr"].as_str())
        .map(str::to_owned)
}

/// Runs the dashboard's disconnect-counting queries through `promtool` on the scenarios of
/// [`count_scenarios`], with the Type, Group and Name pickers on All.
#[test]
fn dashboard_disconnect_counts_include_new_ids_and_never_lifetime_totals_after_gaps() {
    let path = repo().join("grafana/dashboards/localtonet.json");
    let file = path.display().to_string();
    let dashboard = json(&path);
    let work = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for query in &COUNT_QUERIES {
        let what = format!("{file}: panel {:?} query {}", query.panel, query.ref_id);
        let expr = panel_query(&dashboard, query.panel, query.ref_id)
            .unwrap_or_else(|| panic!("{what}: not found"));
        assert!(
            expr.contains(query.window),
            "{what} does not count over {}: {expr}",
            query.window
        );
        let window = format!("{}m", query.minutes);
        let expr = expr
            .replace("$__rate_interval", &window)
            .replace("$__range", &window)
            .replace("$type", ".*")
            .replace("$group", ".*")
            .replace("$name", ".*");
        assert!(!expr.contains('$'), "{what}: unknown variable in {expr}");

        for scenario in count_scenarios(query.minutes) {
            let test = count_test(query, &expr, &scenario);
            let test_file = work.path().join("counts.test.yml");
            let yaml = serde_yaml_ng::to_string(&test).expect("serialise promtool test");
            fs::write(&test_file, yaml).expect("write promtool test");
            let output = match Command::new("promtool")
                .args(["test", "rules"])
                .arg(&test_file)
                .output()
            {
                Ok(output) => output,
                Err(e) => panic!("cannot run `promtool` ({e}): {INSTALL_HINT}"),
            };
            if !output.status.success() {
                failures.push(format!(
                    "{what}, {}:\n{}",
                    scenario.what,
                    String::from_utf8_lossy(&output.stdout)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A promtool test file that evaluates `expr` (rounded) at the end of the window of
/// `scenario` and expects its counts.
fn count_test(query: &CountQuery, expr: &str, scenario: &Scenario) -> Json {
    let count = |e: &Expected| match (query.per_step, e.per_step) {
        (true, Some(per_step)) => per_step,
        _ => e.count,
    };
    let expected: Vec<Json> = if query.total {
        let total: u32 = scenario.expected.iter().map(count).sum();
        vec![serde_json::json!({"labels": "{}", "value": total})]
    } else {
        scenario
            .expected
            .iter()
            .map(|e| {
                let name = e.name.map_or(String::new(), |n| format!(", name=\"{n}\""));
                let labels = format!("{{type=\"tunnel\", id=\"{}\"{name}}}", e.id);
                serde_json::json!({"labels": labels, "value": count(e)})
            })
            .collect()
    };
    let series: Vec<Json> = scenario
        .series
        .iter()
        .map(|(series, values)| serde_json::json!({"series": series, "values": values}))
        .collect();
    serde_json::json!({
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [{
                "expr": format!("round({expr})"),
                "eval_time": format!("{}m", WINDOW_START + query.minutes),
                "exp_samples": expected,
            }],
        }],
    })
}

//! The Prometheus and Alertmanager configurations under test, made from the shipped files.

use serde_json::{Value as Json, json};
use serde_yaml_ng::Value as Yaml;

use super::{INTERVAL, repo, shipped_yaml};

/// The Alertmanager configuration under test: the shipped one with every receiver pointing
/// at the test's receiver (`<receiver_url>/<receiver name>`) and timers of seconds. Routing,
/// grouping and inhibition are kept.
pub fn alertmanager_config(receiver_url: &str) -> String {
    let mut config = shipped_yaml("alertmanager/alertmanager.yml");
    shorten_route_timers(&mut config["route"], true);

    let receivers = config["receivers"]
        .as_sequence_mut()
        .expect("alertmanager.yml has receivers");
    for receiver in receivers {
        let name = receiver["name"].as_str().expect("receiver name").to_owned();
        let url = format!("{receiver_url}/{name}");
        let map = receiver.as_mapping_mut().expect("receiver is a mapping");
        match map
            .get_mut("webhook_configs")
            .and_then(Yaml::as_sequence_mut)
        {
            // Keep the shipped settings (send_resolved, ...) and change only where they post.
            Some(webhooks) => {
                for webhook in webhooks {
                    webhook["url"] = Yaml::from(url.clone());
                }
            }
            // Email and other integrations cannot be observed here; post instead.
            None => {
                map.retain(|key, _| !key.as_str().is_some_and(|k| k.ends_with("_configs")));
                map.insert(
                    Yaml::from("webhook_configs"),
                    to_yaml(json!([{"url": url, "send_resolved": true}])),
                );
            }
        }
    }
    serde_yaml_ng::to_string(&config).expect("serialise alertmanager.yml")
}

/// Sets the timers of the top route, and those a child route overrides, to seconds.
fn shorten_route_timers(route: &mut Yaml, top: bool) {
    for (key, value) in [
        ("group_wait", "1s"),
        ("group_interval", "1s"),
        ("repeat_interval", "30s"),
    ] {
        if top || route.get(key).is_some() {
            route[key] = Yaml::from(value);
        }
    }
    if let Some(routes) = route.get_mut("routes").and_then(Yaml::as_sequence_mut) {
        for child in routes {
            shorten_route_timers(child, false);
        }
    }
}

/// The Prometheus configuration under test: the shipped `prometheus.yml` scraping the
/// exporter at `exporter` (job `localtonet` kept) every second, loading the shipped rules by
/// absolute path, and sending alerts to `alertmanager`.
pub fn prometheus_config(exporter: &str, alertmanager: &str) -> String {
    let mut config = shipped_yaml("prometheus.yml");
    config["global"]["scrape_interval"] = Yaml::from(INTERVAL);
    config["global"]["evaluation_interval"] = Yaml::from(INTERVAL);

    let alertmanagers = config["alerting"]["alertmanagers"]
        .as_sequence_mut()
        .expect("prometheus.yml has alerting.alertmanagers");
    assert!(
        !alertmanagers.is_empty(),
        "prometheus.yml names no Alertmanager"
    );
    for entry in alertmanagers {
        entry["static_configs"] = to_yaml(json!([{"targets": [alertmanager]}]));
    }

    let rule_files = config["rule_files"]
        .as_sequence_mut()
        .expect("prometheus.yml has rule_files");
    for file in rule_files {
        let relative = file.as_str().expect("rule file path").to_owned();
        *file = Yaml::from(repo().join(relative).display().to_string());
    }

    let job = config["scrape_configs"]
        .as_sequence_mut()
        .expect("prometheus.yml has scrape_configs")
        .iter_mut()
        .find(|job| job["job_name"].as_str() == Some("localtonet"))
        .expect("prometheus.yml has a scrape job named `localtonet`");
    for key in ["scrape_interval", "scrape_timeout"] {
        if job.get(key).is_some() {
            job[key] = Yaml::from(INTERVAL);
        }
    }
    job["static_configs"] = to_yaml(json!([{"targets": [exporter]}]));
    serde_yaml_ng::to_string(&config).expect("serialise prometheus.yml")
}

fn to_yaml(value: Json) -> Yaml {
    serde_yaml_ng::to_value(value).expect("JSON converts to YAML")
}

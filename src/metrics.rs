//! The exporter's own metrics, kept with the `prometheus` crate.
//!
//! Every labelled series is created at start (at 0), so `rate()` and `increase()` work from the
//! first scrape and alerts on them need no `absent()`.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::event::Kind;
use crate::state::Outcome;

/// Values of the `outcome` label of `localtonet_exporter_webhook_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The request's events were taken in and their effect committed to the store.
    Accepted,
    /// The body, the `group` parameter or the reading of the body was bad (400).
    Invalid,
    /// An ActionDate was before 2000 or too far ahead of the clock (400).
    DateOutOfRange,
    /// The body was over `--webhook.max-body-bytes` (413).
    TooLarge,
    /// The webhook secret was missing or wrong (401, or 404 for a secret in the path).
    Unauthorized,
    /// The source was not in `--webhook.allowed-cidrs` (403).
    Forbidden,
    /// The source had spent its `--web.rate-limit` budget (429).
    RateLimited,
    /// The request would have tracked more ids than `--series.max` (507).
    SeriesLimit,
    /// The body did not arrive within `--web.body-timeout` (408).
    Timeout,
    /// The store failed to commit or the exporter was shutting down (503).
    Unavailable,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 10] = [
        RequestOutcome::Accepted,
        RequestOutcome::Invalid,
        RequestOutcome::DateOutOfRange,
        RequestOutcome::TooLarge,
        RequestOutcome::Unauthorized,
        RequestOutcome::Forbidden,
        RequestOutcome::RateLimited,
        RequestOutcome::SeriesLimit,
        RequestOutcome::Timeout,
        RequestOutcome::Unavailable,
    ];

    /// The label value, in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Accepted => "accepted",
            RequestOutcome::Invalid => "invalid",
            RequestOutcome::DateOutOfRange => "date_out_of_range",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::Unauthorized => "unauthorized",
            RequestOutcome::Forbidden => "forbidden",
            RequestOutcome::RateLimited => "rate_limited",
            RequestOutcome::SeriesLimit => "series_limit",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Unavailable => "unavailable",
        }
    }
}

/// Values of the `limit` label of `localtonet_exporter_limit_hits_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Headers or a TLS handshake did not arrive within `--web.header-timeout`.
    HeaderTimeout,
    /// A webhook body did not arrive within `--web.body-timeout`.
    BodyTimeout,
    /// Accepting paused because `--web.max-connections` connections were being served.
    MaxConnections,
    /// A request was refused by `--web.rate-limit`.
    RateLimit,
    /// A webhook body was over `--webhook.max-body-bytes`.
    BodySize,
}

impl Limit {
    const ALL: [Limit; 5] = [
        Limit::HeaderTimeout,
        Limit::BodyTimeout,
        Limit::MaxConnections,
        Limit::RateLimit,
        Limit::BodySize,
    ];

    /// The label value, in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::HeaderTimeout => "header_timeout",
            Limit::BodyTimeout => "body_timeout",
            Limit::MaxConnections => "max_connections",
            Limit::RateLimit => "rate_limit",
            Limit::BodySize => "body_size",
        }
    }
}

/// Handles to every self-metric. Cheap to share: each handle is reference-counted inside.
pub struct Metrics {
    registry: Registry,
    webhook_requests: IntCounterVec,
    events: IntCounterVec,
    event_delay: Histogram,
    ids: IntGaugeVec,
    /// `localtonet_exporter_ids_max`: `--series.max`, set by the ingest writer.
    pub ids_max: IntGauge,
    /// `localtonet_exporter_store_commit_duration_seconds`: time of each store commit.
    pub store_commit_duration: Histogram,
    /// `localtonet_exporter_store_commits_total`: store commits attempted, failed ones included.
    pub store_commits: IntCounter,
    /// `localtonet_exporter_store_commit_errors_total`: store commits that failed.
    pub store_commit_errors: IntCounter,
    /// `localtonet_exporter_store_size_bytes`: store size on disk, set after each commit.
    pub store_size: IntGauge,
    limit_hits: IntCounterVec,
    /// `localtonet_exporter_config_last_reload_successful`: 1 or 0, set at start and on reload.
    pub reload_successful: IntGauge,
    /// `localtonet_exporter_config_last_reload_success_timestamp_seconds`: Unix seconds.
    pub reload_success_timestamp: Gauge,
}

impl Metrics {
    /// Registers every self-metric, process metrics included.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;

        let metrics = Metrics {
            webhook_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "localtonet_exporter_webhook_requests_total",
                        "Webhook requests received, by how they were answered.",
                    ),
                    &["outcome"],
                )?,
            )?,
            events: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "localtonet_exporter_events_total",
                        "Events in accepted webhook requests, by what they did to the state.",
                    ),
                    &["type", "outcome"],
                )?,
            )?,
            event_delay: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "localtonet_exporter_event_delay_seconds",
                        "Time from an event's ActionDate to its receipt; hours mean a wrong \
                         --webhook.timezone.",
                    )
                    .buckets(vec![
                        0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
                        14400.0, 43200.0, 86400.0,
                    ]),
                )?,
            )?,
            ids: register(
                r,
                IntGaugeVec::new(
                    Opts::new("localtonet_exporter_ids", "Tokens and tunnels tracked."),
                    &["type"],
                )?,
            )?,
            ids_max: register(
                r,
                IntGauge::new(
                    "localtonet_exporter_ids_max",
                    "Most tokens and tunnels tracked at once, set by --series.max.",
                )?,
            )?,
            store_commit_duration: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "localtonet_exporter_store_commit_duration_seconds",
                        "Time to make one group of webhook events durable in the store.",
                    )
                    .buckets(prometheus::exponential_buckets(0.0001, 4.0, 9)?),
                )?,
            )?,
            store_commits: register(
                r,
                IntCounter::new(
                    "localtonet_exporter_store_commits_total",
                    "Commits of webhook events to the store.",
                )?,
            )?,
            store_commit_errors: register(
                r,
                IntCounter::new(
                    "localtonet_exporter_store_commit_errors_total",
                    "Store commits that failed; their webhook requests were answered 503.",
                )?,
            )?,
            store_size: register(
                r,
                IntGauge::new(
                    "localtonet_exporter_store_size_bytes",
                    "Size of the store on disk, write-ahead log included.",
                )?,
            )?,
            limit_hits: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "localtonet_exporter_limit_hits_total",
                        "Times a resource limit was reached, by limit.",
                    ),
                    &["limit"],
                )?,
            )?,
            reload_successful: register(
                r,
                IntGauge::new(
                    "localtonet_exporter_config_last_reload_successful",
                    "1 if the last reload of the names, secret and web config files succeeded.",
                )?,
            )?,
            reload_success_timestamp: register(
                r,
                Gauge::new(
                    "localtonet_exporter_config_last_reload_success_timestamp_seconds",
                    "Unix time of the last successful configuration load.",
                )?,
            )?,
            registry,
        };

        let build_info = IntGaugeVec::new(
            Opts::new(
                "localtonet_exporter_build_info",
                "Always 1; labels say which build of the exporter is running.",
            ),
            &["version", "revision", "rustc_version"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("LOCALTONET_EXPORTER_REVISION").unwrap_or("unknown"),
                option_env!("LOCALTONET_EXPORTER_RUSTC").unwrap_or("unknown"),
            ])
            .set(1);
        metrics.registry.register(Box::new(build_info))?;
        metrics.register_process_collector()?;
        metrics.create_series();
        Ok(metrics)
    }

    #[cfg(target_os = "linux")]
    fn register_process_collector(&self) -> Result<(), prometheus::Error> {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        self.registry.register(Box::new(collector))
    }

    #[cfg(not(target_os = "linux"))]
    fn register_process_collector(&self) -> Result<(), prometheus::Error> {
        Ok(())
    }

    fn create_series(&self) {
        for outcome in RequestOutcome::ALL {
            self.webhook_requests.with_label_values(&[outcome.as_str()]);
        }
        for kind in Kind::ALL {
            self.ids.with_label_values(&[kind.as_str()]);
            for outcome in Outcome::LABELS {
                self.events.with_label_values(&[kind.as_str(), outcome]);
            }
        }
        for limit in Limit::ALL {
            self.limit_hits.with_label_values(&[limit.as_str()]);
        }
    }

    /// Counts one webhook request by how it was answered.
    pub fn request(&self, outcome: RequestOutcome) {
        self.webhook_requests
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Counts one event by what it did.
    pub fn event(&self, kind: Kind, outcome: Outcome) {
        self.events
            .with_label_values(&[kind.as_str(), outcome.label()])
            .inc();
    }

    /// Records how long after its ActionDate an event arrived (negative delays count as 0).
    pub fn event_delay(&self, seconds: f64) {
        self.event_delay.observe(seconds.max(0.0));
    }

    /// Sets the number of tracked ids of a kind.
    pub fn set_ids(&self, kind: Kind, count: usize) {
        self.ids
            .with_label_values(&[kind.as_str()])
            .set(count as i64);
    }

    /// Counts one hit of a resource limit.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits.with_label_values(&[limit.as_str()]).inc();
    }

    /// Appends the self-metrics in the text format.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), prometheus::Error> {
        TextEncoder::new().encode(&self.registry.gather(), out)
    }
}

fn register<M>(registry: &Registry, metric: M) -> Result<M, prometheus::Error>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_labelled_series_exists_before_anything_happens() {
        let metrics = Metrics::new().expect("metrics");
        let mut out = Vec::new();
        metrics.encode(&mut out).expect("encode");
        let text = String::from_utf8(out).expect("utf-8");
        for outcome in RequestOutcome::ALL {
            let line = format!(
                "localtonet_exporter_webhook_requests_total{{outcome=\"{}\"}} 0",
                outcome.as_str()
            );
            assert!(text.contains(&line), "missing {line}");
        }
        assert!(text.contains(
            "localtonet_exporter_events_total{outcome=\"out_of_order\",type=\"tunnel\"} 0"
        ));
        assert!(text.contains("localtonet_exporter_build_info{"));
    }
}

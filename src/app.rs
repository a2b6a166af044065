//! What the HTTP handlers share: settings fixed at start, the state, the self-metrics, and
//! the configuration files that SIGHUP and `/-/reload` re-read.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use parking_lot::RwLock;

use crate::cli::ServeArgs;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::payload;
use crate::secret::Secret;
use crate::web_config::WebConfig;

/// Settings fixed at start, from the flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How webhook bodies are read and validated.
    pub payload: payload::Options,
    /// Path that receives webhooks, without a trailing slash (`--webhook.path`).
    pub webhook_path: String,
    /// Path of the scrape endpoint, without a trailing slash (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// Largest webhook body accepted, in bytes (`--webhook.max-body-bytes`).
    pub max_body_bytes: u64,
    /// Time a client has to send a webhook body (`--web.body-timeout`).
    pub body_timeout: Duration,
    /// Whether the admin API is routed (`--web.enable-admin-api`).
    pub enable_admin_api: bool,
    /// Whether `POST /-/reload` is routed (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// Sources allowed to post webhooks; empty allows any (`--webhook.allowed-cidrs`).
    pub allowed_cidrs: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` names the client (`--web.trusted-proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// Names file re-read on reload, if any (`--names.file`).
    pub names_file: Option<PathBuf>,
    /// Webhook secret file re-read on reload, if any (`--webhook.secret-file`).
    pub secret_file: Option<PathBuf>,
    /// Web config file re-read on reload, if any (`--web.config.file`).
    pub web_config_file: Option<PathBuf>,
}

impl Settings {
    /// Copies the settings out of the parsed flags; reads no file.
    pub fn from_args(args: &ServeArgs) -> Settings {
        Settings {
            payload: payload::Options {
                zone: args.timezone.clone(),
                max_future_skew: args.max_future_skew,
                expose_token_ids: args.expose_token_ids,
            },
            webhook_path: args.webhook_path.clone(),
            telemetry_path: args.telemetry_path.clone(),
            max_body_bytes: args.max_body_bytes,
            body_timeout: args.body_timeout,
            enable_admin_api: args.enable_admin_api,
            enable_lifecycle: args.enable_lifecycle,
            allowed_cidrs: args.allowed_cidrs.clone(),
            trusted_proxies: args.trusted_proxies.clone(),
            names_file: args.names_file.clone(),
            secret_file: args.secret_file.clone(),
            web_config_file: args.web_config_file.clone(),
        }
    }
}

/// Path prefixes the exporter serves itself; the webhook and telemetry paths stay clear of them.
const RESERVED_PREFIXES: [&str; 2] = ["/-/", "/api/"];

impl Settings {
    /// Checks that the webhook and telemetry paths can both be served.
    pub fn validate(&self) -> Result<(), String> {
        let (webhook, telemetry) = (&self.webhook_path, &self.telemetry_path);
        for (flag, path) in [
            ("--webhook.path", webhook),
            ("--web.telemetry-path", telemetry),
        ] {
            if path.contains(['{', '}', '*']) {
                return Err(format!("{flag} {path:?}: may not contain {{, }} or *"));
            }
            let reserved = |prefix: &&&str| {
                path.starts_with(**prefix) || path.as_str() == prefix.trim_end_matches('/')
            };
            if let Some(prefix) = RESERVED_PREFIXES.iter().find(reserved) {
                return Err(format!(
                    "{flag} {path:?}: paths under {prefix} are the exporter's own"
                ));
            }
        }
        if webhook == "/" {
            return Err("--webhook.path may not be /".into());
        }
        if webhook == telemetry || telemetry.starts_with(&format!("{webhook}/")) {
            return Err(format!(
                "--web.telemetry-path {telemetry:?} overlaps --webhook.path {webhook:?}"
            ));
        }
        Ok(())
    }
}

/// The configuration files' content, replaced whole by a successful reload.
#[derive(Clone, Debug, Default)]
pub struct Files {
    /// Friendly names of ids; empty without `--names.file`.
    pub names: Names,
    /// Webhook secret; `None` without `--webhook.secret-file`, leaving the webhook open.
    pub secret: Option<Secret>,
    /// TLS and basic auth settings; the default (neither) without `--web.config.file`.
    pub web: Arc<WebConfig>,
}

impl Files {
    /// Reads every configured file. Fails on the first bad one, naming it.
    pub fn load(settings: &Settings) -> Result<Files, String> {
        let names = match &settings.names_file {
            Some(path) => Names::load(path).map_err(|e| e.to_string())?,
            None => Names::default(),
        };
        let secret = settings
            .secret_file
            .as_deref()
            .map(Secret::load)
            .transpose()?;
        let web = match &settings.web_config_file {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::default(),
        };
        Ok(Files {
            names,
            secret,
            web: Arc::new(web),
        })
    }
}

/// Everything the handlers share.
pub struct App {
    /// Settings fixed at start.
    pub settings: Settings,
    /// Handle to the state: reads the published view, sends events to the single writer.
    pub ingest: Ingest,
    /// The exporter's own metrics.
    pub metrics: Arc<Metrics>,
    /// Secret and web config in force; names live in the ingest view.
    files: RwLock<(Option<Secret>, Arc<WebConfig>)>,
    ready: AtomicBool,
    rate_limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl App {
    /// Builds the shared state. `ingest` was started with the names of the same `Files`;
    /// the rest of them is taken from `secret` and `web`.
    pub fn new(
        settings: Settings,
        ingest: Ingest,
        metrics: Arc<Metrics>,
        (secret, web): (Option<Secret>, Arc<WebConfig>),
        rate: Option<(NonZeroU32, NonZeroU32)>,
    ) -> App {
        let rate_limiter = rate.map(|(per_second, burst)| {
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        App {
            settings,
            ingest,
            metrics,
            files: RwLock::new((secret, web)),
            ready: AtomicBool::new(false),
            rate_limiter,
        }
    }

    /// The webhook secret in force, if any.
    pub fn secret(&self) -> Option<Secret> {
        self.files.read().0.clone()
    }

    /// The web config in force.
    pub fn web(&self) -> Arc<WebConfig> {
        Arc::clone(&self.files.read().1)
    }

    /// True once the state is loaded and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the exporter ready (state loaded) or not (shutdown begun); seen by `/-/ready`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Takes one request from `client` out of its rate budget; false when it is spent.
    pub fn admit(&self, client: IpAddr) -> bool {
        self.rate_limiter
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(&client).is_ok())
    }

    /// Forgets rate budgets of clients that are back to full, to bound memory.
    pub fn trim_rate_limiter(&self) {
        if let Some(limiter) = &self.rate_limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Re-reads the names, secret and web config files. All or nothing: if one is bad, every
    /// old one stays in force. Records the outcome in the reload metrics.
    pub fn reload(&self) -> Result<(), String> {
        let result = Files::load(&self.settings).and_then(|files| {
            let had_tls = self.web().tls.is_some();
            if had_tls != files.web.tls.is_some() {
                return Err(
                    "turning TLS on or off needs a restart; kept the old web config".into(),
                );
            }
            self.ingest.set_names(files.names);
            *self.files.write() = (files.secret, files.web);
            Ok(())
        });
        match &result {
            Ok(()) => {
                self.metrics.reload_successful.set(1);
                self.metrics.reload_success_timestamp.set(now_seconds());
                tracing::info!("reloaded configuration files");
            }
            Err(e) => {
                self.metrics.reload_successful.set(0);
                tracing::error!(err = %e, "reload failed; the previous configuration stays");
            }
        }
        result
    }
}

/// The current Unix time in seconds.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

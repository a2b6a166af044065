//! Command-line flags. Every flag can also be set by an environment variable named
//! `LOCALTONET_EXPORTER_` followed by the flag in upper case, dots and dashes as underscores
//! (`--web.listen-address` → `LOCALTONET_EXPORTER_WEB_LISTEN_ADDRESS`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::action_date::Zone;

/// Receives Localtonet webhooks and exposes the state of every token and tunnel to Prometheus.
#[derive(Debug, Parser)]
#[command(
    name = "localtonet-exporter",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The tool to run instead of the exporter; `None` runs the exporter.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The exporter's flags; they cannot be combined with a subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands: small tools run instead of the exporter.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the fingerprint shown for an authtoken (read from standard input if not given).
    Fingerprint(FingerprintArgs),
    /// Post a test event to a running exporter, to try the whole alert path.
    Send(SendArgs),
}

/// Arguments of `fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// The authtoken. Prefer standard input: arguments end up in shell history.
    pub token: Option<String>,
}

/// Arguments of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Webhook URL of the exporter, with `?group=` if wanted.
    #[arg(long, default_value = "http://localhost:9877/webhook")]
    pub url: String,
    /// Type of the event.
    #[arg(long = "type", value_enum, default_value_t = SendKind::Tunnel)]
    pub kind: SendKind,
    /// Tunnel id or authtoken.
    #[arg(long)]
    pub id: String,
    /// Status of the event.
    #[arg(long, value_enum)]
    pub status: SendStatus,
    /// ActionDate to send (default: now, in UTC with a Z).
    #[arg(long)]
    pub at: Option<String>,
    /// File holding the webhook secret; it is sent in an Authorization: Bearer header.
    #[arg(long = "secret-file")]
    pub secret_file: Option<PathBuf>,
    /// PEM file of the CA that signed the exporter's certificate, for https URLs.
    #[arg(long = "ca-file")]
    pub ca_file: Option<PathBuf>,
}

/// `Type` of the event `send` posts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SendKind {
    /// An authtoken event.
    Token,
    /// A tunnel event.
    Tunnel,
}

/// `Status` of the event `send` posts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SendStatus {
    /// The id connected.
    Connected,
    /// The id disconnected.
    Disconnected,
}

/// Least important level of log line shown (`--log.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Also per-request detail.
    Debug,
    /// Start-up, shutdown, state changes.
    Info,
    /// Only warnings and errors.
    Warn,
    /// Only errors.
    Error,
}

/// How log lines are written (`--log.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// key=value pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Flags of the exporter itself.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for webhooks and scrapes (`:9877` is every interface).
    #[arg(
        long = "web.listen-address",
        env = "LOCALTONET_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = ":9877",
        value_parser = parse_listen_address
    )]
    pub listen_address: String,

    /// Path under which metrics are exposed.
    #[arg(
        long = "web.telemetry-path",
        env = "LOCALTONET_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics",
        value_parser = parse_path
    )]
    pub telemetry_path: String,

    /// Web configuration file (TLS and basic auth), in the format of the Prometheus
    /// exporter-toolkit, so node_exporter's file works here too.
    #[arg(long = "web.config.file", env = "LOCALTONET_EXPORTER_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Enable the admin API (list and delete ids). Anyone who can reach it can delete state:
    /// protect it with basic auth in --web.config.file.
    #[arg(
        long = "web.enable-admin-api",
        env = "LOCALTONET_EXPORTER_WEB_ENABLE_ADMIN_API",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub enable_admin_api: bool,

    /// Enable POST /-/reload.
    #[arg(
        long = "web.enable-lifecycle",
        env = "LOCALTONET_EXPORTER_WEB_ENABLE_LIFECYCLE",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub enable_lifecycle: bool,

    /// Most connections served at once; further clients wait to be accepted.
    #[arg(
        long = "web.max-connections",
        env = "LOCALTONET_EXPORTER_WEB_MAX_CONNECTIONS",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// Time a client has to send a request's headers, and most time a kept-alive connection
    /// may sit idle.
    #[arg(
        long = "web.header-timeout",
        env = "LOCALTONET_EXPORTER_WEB_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub header_timeout: Duration,

    /// Time a client has to send a request's body.
    #[arg(
        long = "web.body-timeout",
        env = "LOCALTONET_EXPORTER_WEB_BODY_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub body_timeout: Duration,

    /// Requests per second allowed from one source address, on average (0: no limit).
    /// Health checks are not limited.
    #[arg(
        long = "web.rate-limit",
        env = "LOCALTONET_EXPORTER_WEB_RATE_LIMIT",
        default_value_t = 200
    )]
    pub rate_limit: u32,

    /// Requests one source address may send at once above --web.rate-limit.
    #[arg(
        long = "web.rate-limit-burst",
        env = "LOCALTONET_EXPORTER_WEB_RATE_LIMIT_BURST",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_limit_burst: u32,

    /// Proxies whose X-Forwarded-For is believed, as comma-separated addresses or CIDRs.
    #[arg(
        long = "web.trusted-proxies",
        env = "LOCALTONET_EXPORTER_WEB_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_net
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// Path that receives webhooks.
    #[arg(
        long = "webhook.path",
        env = "LOCALTONET_EXPORTER_WEBHOOK_PATH",
        default_value = "/webhook",
        value_parser = parse_path
    )]
    pub webhook_path: String,

    /// File holding the webhook secret. Requests must carry it as the last path segment,
    /// as ?secret=, or as Authorization: Bearer. Without it the webhook is open to anyone.
    #[arg(
        long = "webhook.secret-file",
        env = "LOCALTONET_EXPORTER_WEBHOOK_SECRET_FILE"
    )]
    pub secret_file: Option<PathBuf>,

    /// Source addresses allowed to post webhooks, as comma-separated addresses or CIDRs
    /// (default: any).
    #[arg(
        long = "webhook.allowed-cidrs",
        env = "LOCALTONET_EXPORTER_WEBHOOK_ALLOWED_CIDRS",
        value_delimiter = ',',
        value_parser = parse_net
    )]
    pub allowed_cidrs: Vec<IpNet>,

    /// Time zone of ActionDates sent without an offset: UTC, an offset like +03:00, or an
    /// IANA name like Europe/Istanbul.
    #[arg(
        long = "webhook.timezone",
        env = "LOCALTONET_EXPORTER_WEBHOOK_TIMEZONE",
        default_value = "UTC"
    )]
    pub timezone: Zone,

    /// How far ahead of this machine's clock an ActionDate may be.
    #[arg(
        long = "webhook.max-future-skew",
        env = "LOCALTONET_EXPORTER_WEBHOOK_MAX_FUTURE_SKEW",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub max_future_skew: Duration,

    /// Largest webhook body accepted, in bytes.
    #[arg(
        long = "webhook.max-body-bytes",
        env = "LOCALTONET_EXPORTER_WEBHOOK_MAX_BODY_BYTES",
        default_value_t = 262_144,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_body_bytes: u64,

    /// Show raw authtokens in the id label instead of fingerprints. Dangerous: anyone who
    /// can read the metrics can then use the tokens.
    #[arg(
        long = "webhook.expose-token-ids",
        env = "LOCALTONET_EXPORTER_WEBHOOK_EXPOSE_TOKEN_IDS",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub expose_token_ids: bool,

    /// TOML file that gives tunnels and tokens friendly names (re-read on SIGHUP).
    #[arg(long = "names.file", env = "LOCALTONET_EXPORTER_NAMES_FILE")]
    pub names_file: Option<PathBuf>,

    /// SQLite file that keeps the state across restarts (created if missing).
    #[arg(
        long = "storage.path",
        env = "LOCALTONET_EXPORTER_STORAGE_PATH",
        default_value = "localtonet-exporter.db"
    )]
    pub storage_path: PathBuf,

    /// Keep state in memory only: a restart forgets every token and tunnel.
    #[arg(
        long = "storage.in-memory",
        env = "LOCALTONET_EXPORTER_STORAGE_IN_MEMORY",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub in_memory: bool,

    /// Most tokens and tunnels tracked; events for further new ids are refused.
    #[arg(
        long = "series.max",
        env = "LOCALTONET_EXPORTER_SERIES_MAX",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000)
    )]
    pub series_max: u64,

    /// Forget ids whose newest event is older than this (e.g. 30d; default: never). A
    /// forgotten id's series disappear, which resolves its alerts.
    #[arg(
        long = "series.expire-after",
        env = "LOCALTONET_EXPORTER_SERIES_EXPIRE_AFTER",
        value_parser = parse_duration
    )]
    pub expire_after: Option<Duration>,

    /// Least important log level shown.
    #[arg(
        long = "log.level",
        env = "LOCALTONET_EXPORTER_LOG_LEVEL",
        value_enum,
        default_value_t = LogLevel::Info
    )]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(
        long = "log.format",
        env = "LOCALTONET_EXPORTER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Logfmt
    )]
    pub log_format: LogFormat,
}

/// Longest duration a flag accepts: 100 years.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Reads a duration like `30s`, `5m`, `1h30m` or `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e} (expected e.g. 30s, 5m, 1h30m, 30d)"))?;
    if duration.is_zero() {
        return Err("must be more than 0".into());
    }
    if duration > MAX_DURATION {
        return Err("must be at most 100 years".into());
    }
    Ok(duration)
}

/// Checks `:port`, `host:port` or `[v6]:port`.
fn parse_listen_address(text: &str) -> Result<String, String> {
    let port = text.rsplit_once(':').map(|(_, port)| port);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(text.to_string()),
        _ => Err("expected :port, host:port or [v6]:port".into()),
    }
}

fn parse_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.contains(['?', '#']) || text.contains("//") {
        return Err("must start with / and hold no ?, # or //".into());
    }
    let trimmed = text.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_reads_its_environment_variable() {
        let command = Cli::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let expected = format!(
                "LOCALTONET_EXPORTER_{}",
                long.to_uppercase().replace(['.', '-'], "_")
            );
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or("<none>");
            assert_eq!(env, expected, "--{long}");
        }
    }

    #[test]
    fn defaults_follow_the_exporter_conventions() {
        let cli = Cli::try_parse_from(["localtonet-exporter"]).expect("defaults parse");
        assert_eq!(cli.serve.listen_address, ":9877");
        assert_eq!(cli.serve.telemetry_path, "/metrics");
        assert_eq!(cli.serve.webhook_path, "/webhook");
        assert_eq!(cli.serve.timezone, Zone::utc());
        assert_eq!(cli.serve.max_future_skew, Duration::from_secs(300));
        assert!(!cli.serve.expose_token_ids);
    }

    #[test]
    fn lists_and_durations_parse() {
        let cli = Cli::try_parse_from([
            "localtonet-exporter",
            "--webhook.allowed-cidrs=10.0.0.0/8,192.0.2.7",
            "--series.expire-after=30d",
            "--webhook.timezone=Europe/Istanbul",
            "--webhook.path=/hooks/localtonet/",
        ])
        .expect("parses");
        assert_eq!(cli.serve.allowed_cidrs.len(), 2);
        assert_eq!(
            cli.serve.expire_after,
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(cli.serve.webhook_path, "/hooks/localtonet");
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            ["localtonet-exporter", "--webhook.timezone=Mars/Base"],
            ["localtonet-exporter", "--webhook.max-future-skew=soon"],
            ["localtonet-exporter", "--webhook.allowed-cidrs=10.0.0.0/33"],
            ["localtonet-exporter", "--web.telemetry-path=metrics"],
            ["localtonet-exporter", "--series.max=0"],
            [
                "localtonet-exporter",
                "--series.expire-after=1000000000000d",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}

//! Running the exporter: load configuration and state, listen, serve, shut down.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{App, Files, Settings, now_seconds};
use crate::cli::ServeArgs;
use crate::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::server::{self, ConnectionLimits};
use crate::store::{MemoryStore, SqliteStore, Store};

/// Why the exporter stopped with an error, and the exit code that says so.
#[derive(Debug, thiserror::Error)]
pub enum Exit {
    /// A flag or configuration file is wrong (exit code 2).
    #[error("{0}")]
    Config(String),
    /// The exporter could not run: store, listener, runtime (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl Exit {
    /// The process exit code: 2 for a configuration error, 1 for any other failure.
    pub fn code(&self) -> u8 {
        match self {
            Exit::Config(_) => 2,
            Exit::Failed(_) => 1,
        }
    }
}

/// Reads the configuration files the flags name, before anything else happens.
pub fn configure(args: &ServeArgs) -> Result<(Settings, Files), Exit> {
    let settings = Settings::from_args(args);
    settings.validate().map_err(Exit::Config)?;
    let files = Files::load(&settings).map_err(Exit::Config)?;
    Ok((settings, files))
}

/// Runs the exporter until SIGINT or SIGTERM, with what [`configure`] read.
pub async fn run(args: ServeArgs, settings: Settings, files: Files) -> Result<(), Exit> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting localtonet-exporter"
    );
    warn_about_risky_settings(&settings);

    let metrics = Arc::new(Metrics::new().map_err(|e| Exit::Failed(e.to_string()))?);
    let store: Box<dyn Store> = if args.in_memory {
        tracing::warn!("--storage.in-memory: state is lost when the exporter stops");
        Box::new(MemoryStore)
    } else {
        let store = tokio::task::block_in_place(|| SqliteStore::open(&args.storage_path))
            .map_err(|e| Exit::Failed(e.to_string()))?;
        Box::new(store)
    };
    let config = ingest::Config {
        series_max: usize::try_from(args.series_max).unwrap_or(usize::MAX),
        expose_token_ids: args.expose_token_ids,
    };
    let started = std::time::Instant::now();
    let ingest = tokio::task::block_in_place(|| {
        Ingest::start(store, files.names, config, Arc::clone(&metrics))
    })
    .map_err(|e| Exit::Failed(e.to_string()))?;
    let storage = match args.in_memory {
        true => "memory".to_string(),
        false => args.storage_path.display().to_string(),
    };
    tracing::info!(
        ids = ingest.read().len(),
        storage = %storage,
        took_ms = started.elapsed().as_millis() as u64,
        "state loaded"
    );

    let rate = NonZeroU32::new(args.rate_limit).zip(NonZeroU32::new(args.rate_limit_burst));
    let app = Arc::new(App::new(
        settings,
        ingest,
        metrics,
        (files.secret, files.web),
        rate,
    ));
    app.metrics.reload_successful.set(1);
    app.metrics.reload_success_timestamp.set(now_seconds());

    let listener = bind(&args.listen_address).await?;
    let address = listener
        .local_addr()
        .map_err(|e| Exit::Failed(e.to_string()))?;
    let tls = app.web().tls.is_some();
    app.set_ready(true);
    tracing::info!(address = %address, tls, "listening");

    spawn_background_tasks(&app, args.expire_after);
    let limits = ConnectionLimits {
        max_connections: args.max_connections as usize,
        header_timeout: args.header_timeout,
    };
    let router = crate::http::router(Arc::clone(&app));
    let shutdown = {
        let app = Arc::clone(&app);
        async move {
            shutdown_signal().await;
            app.set_ready(false);
            tracing::info!("shutting down: finishing requests in progress");
        }
    };
    server::serve(listener, Arc::clone(&app), router, limits, shutdown).await;

    app.ingest.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn warn_about_risky_settings(settings: &Settings) {
    if settings.payload.expose_token_ids {
        tracing::warn!(
            "--webhook.expose-token-ids is set: raw authtokens appear in metrics and logs; \
             anyone who can read them can use the tokens"
        );
    }
    if settings.secret_file.is_none() {
        tracing::warn!(
            "no --webhook.secret-file: the webhook endpoint is open, anyone who can reach it \
             can post events"
        );
    }
}

/// Binds `:port` (every interface, IPv6 and IPv4 where possible), `host:port` or
/// `[v6]:port`.
async fn bind(address: &str) -> Result<TcpListener, Exit> {
    let fail = |e: std::io::Error| Exit::Failed(format!("cannot listen on {address}: {e}"));
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| Exit::Config(format!("--web.listen-address {address:?}: bad port")))?;
        return match TcpListener::bind(("::", port)).await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind(("0.0.0.0", port)).await.map_err(fail),
        };
    }
    TcpListener::bind(address).await.map_err(fail)
}

fn spawn_background_tasks(app: &Arc<App>, expire_after: Option<Duration>) {
    let reloader = Arc::clone(app);
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload instead");
            return;
        };
        while hangups.recv().await.is_some() {
            let app = Arc::clone(&reloader);
            let _ = tokio::task::spawn_blocking(move || app.reload()).await;
        }
    });

    let trimmer = Arc::clone(app);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            trimmer.trim_rate_limiter();
        }
    });

    if let Some(expire_after) = expire_after {
        let app = Arc::clone(app);
        let period = (expire_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                let cutoff = chrono::Duration::from_std(expire_after)
                    .ok()
                    .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
                    .and_then(|t| t.timestamp_nanos_opt());
                if let Some(before) = cutoff {
                    app.ingest.expire(before).await;
                }
            }
        });
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; stop the exporter with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

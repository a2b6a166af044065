//! Log set-up: structured lines on standard error, as logfmt or JSON.
//!
//! Lines are handed to a background thread that writes them in batches, so logging a state
//! change never waits for the terminal or the journal. No line is dropped: when the queue is
//! full the logging thread waits.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogFormat, LogLevel};

/// Installs the global logger. Libraries below the exporter log only warnings and errors.
///
/// Keep the returned guard until the program ends: dropping it writes what is still queued.
pub fn init(level: LogLevel, format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let level = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let filter = Targets::new()
        .with_default(LevelFilter::WARN.min(level))
        .with_target("localtonet_exporter", level);
    let registry = tracing_subscriber::registry().with(filter);

    let result = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_target(false)
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_target(false)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging could not be set up: {e}");
    }
    guard
}

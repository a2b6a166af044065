//! Entry point: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use localtonet_exporter::cli::{Cli, Command, ServeArgs};
use localtonet_exporter::{commands, logging, serve};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, as for every other configuration error.
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };

    let result = match cli.command {
        Some(Command::Fingerprint(args)) => commands::fingerprint(args).map_err(|e| (e, 2)),
        Some(Command::Send(args)) => commands::send(args).map_err(|e| (e, 1)),
        None => return run_exporter(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Configuration errors are one line on standard error; once logging is set up, errors are
/// logged.
fn run_exporter(args: ServeArgs) -> ExitCode {
    let (settings, files) = match serve::configure(&args) {
        Ok(configured) => configured,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.code());
        }
    };
    let _log_writer = logging::init(args.log_level, args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(err = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve::run(args, settings, files)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(err = %e, "localtonet-exporter stopped");
            ExitCode::from(e.code())
        }
    }
}

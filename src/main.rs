//! Entry point: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use localtonet_exporter::cli::{Cli, Command};
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
        None => {
            logging::init(cli.serve.log_level, cli.serve.log_format);
            run_exporter(cli.serve)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

fn run_exporter(args: localtonet_exporter::cli::ServeArgs) -> Result<(), (String, u8)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (format!("cannot start the async runtime: {e}"), 1))?;
    runtime.block_on(serve::run(args)).map_err(|e| {
        tracing::error!(err = %e, "localtonet-exporter stopped");
        (e.to_string(), e.code())
    })
}

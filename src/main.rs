//! `mmp`: parse the command line, run one command, map the result to an exit
//! code. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use mmp::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Score(args) => mmp::score::run(&args),
        Command::Train(args) => return mmp::train::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`mmp score | head`) is a normal end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mmp: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Human-readable logs on stderr; `RUST_LOG` sets the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

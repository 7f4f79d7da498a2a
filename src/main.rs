//! `mmp`: parse the command line, run one command, map the result to an exit
//! code. Everything else is in the library.

use std::process::ExitCode;

use mmp::cli::{Cli, Command};

fn main() -> ExitCode {
    mmp::logging::report_panics();
    let cli = Cli::parse_args();
    let result = match cli.command {
        Command::Serve(args) => {
            if let Err(msg) = mmp::logging::init("info") {
                let e = mmp::Error::config(msg);
                mmp::say!("mmp serve: {e}");
                return ExitCode::from(e.exit_code());
            }
            let code = mmp::serve::main(&args.overrides());
            mmp::logging::flush();
            return code;
        }
        Command::Score(args) => {
            let _ = mmp::logging::init("warn");
            let opts = args.options();
            mmp::stop::run_command("mmp-score", move || mmp::score::run(&opts))
        }
        Command::Train(args) => return mmp::train::main(&args.options()),
        Command::Transform(args) => return mmp::transform::main(&args.options()),
    };
    mmp::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`mmp score | head`) is a normal end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            mmp::say!("mmp: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

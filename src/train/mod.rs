//! `mmp train`: SageMaker's training contract (being built; see issue 5).

use std::process::ExitCode;

use crate::cli::TrainArgs;

/// Run `mmp train` and return the process exit code.
pub fn main(args: &TrainArgs) -> ExitCode {
    eprintln!("mmp train: not available yet in this build ({})", args.opt_ml.display());
    ExitCode::from(70)
}

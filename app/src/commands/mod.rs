//! The `sparsegrad` program's commands. Each `run` takes its parsed arguments and returns the
//! process exit status: 0 success, 1 a failed audit or run, 2 a usage error.

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, DataCommand, ThreadsOpt};

pub mod data;
pub mod experiment;
pub mod gradcheck;
pub mod train;

/// Runs the program on its arguments (with the program name first); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let mut cmd = Cli::command();
    // `gradcheck --help` lists the registered ops: generated from the audit registry, only
    // when gradcheck's help may be printed (building the registry is not free).
    if args.iter().any(|a| a == "gradcheck") && args.iter().any(|a| a == "-h" || a == "--help" || a == "help") {
        let list = gradcheck::ops_help();
        cmd = cmd.mut_subcommand("gradcheck", |c| c.after_help(list.clone()).after_long_help(list));
    }
    let cli = match cmd.try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout (status 0), errors to stderr (status 2); a closed
            // stdout is not an error worth a panic.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match cli.command {
        None => train::demo(),
        Some(Command::Train(a)) => train::run(&a),
        Some(Command::Eval(a)) => train::eval(&a),
        Some(Command::Inspect(a)) => train::inspect(&a),
        Some(Command::Gradcheck(a)) => gradcheck::run(&a),
        Some(Command::Data(d)) => match d.command {
            DataCommand::Info(a) => data::info(&a),
            DataCommand::MakeVariations(a) => data::make_variations(&a),
        },
        Some(Command::Experiment(a)) => experiment::run(&a),
    }
}

/// Applies `--threads N` (absent: rayon's default) to the global rayon pool.
pub(crate) fn set_threads(t: ThreadsOpt) -> Result<(), String> {
    if let Some(n) = t.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("could not set {n} threads: {e}"))?;
    }
    Ok(())
}

/// Prints `error: {cmd}: {msg}` on stderr and returns `status`.
pub(crate) fn fail(cmd: &str, msg: impl std::fmt::Display, status: i32) -> i32 {
    eprintln!("error: {cmd}: {msg}");
    status
}

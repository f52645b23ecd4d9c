//! The `sparsegrad` program's commands. Each `run` takes the words after the command name and
//! returns the process exit status: 0 success, 1 a failed audit or run, 2 a usage error.

pub mod data;
pub mod gradcheck;
pub mod train;

/// Top-level help of the program.
pub const HELP: &str = "\
sparsegrad: auditable gradients on a from-scratch tensor engine

USAGE:
    sparsegrad <COMMAND> [OPTIONS]
    sparsegrad <COMMAND> --help

COMMANDS:
    gradcheck   audit every registered gradient rule against central differences in f64
    train       train the MNIST LeNet (on the embedded MNIST subset unless --dir is given)
    data        inspect data sets, write MNIST variations
    help        print this message, or `help <COMMAND>` for a command's options

Every command prints its options with --help. Exit status: 0 success, 1 failure, 2 usage error.
";

/// Runs the program on its arguments (without the program name); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        print!("{HELP}");
        return 0;
    };
    match cmd.as_str() {
        "-h" | "--help" => {
            print!("{HELP}");
            0
        }
        "help" => match rest.first() {
            None => {
                print!("{HELP}");
                0
            }
            Some(c) => main(&[c.clone(), "--help".to_string()]),
        },
        "-V" | "--version" => {
            println!("sparsegrad {}", env!("CARGO_PKG_VERSION"));
            0
        }
        "gradcheck" => gradcheck::run(rest),
        "train" => train::run(rest),
        "data" => match data::run(rest) {
            Ok(()) => 0,
            Err(msg) => {
                eprintln!("error: {msg}");
                if msg.contains("unknown") || msg.contains("unexpected") || msg.contains("needs a value") {
                    2
                } else {
                    1
                }
            }
        },
        other => {
            eprintln!("error: unknown command `{other}`\n\n{HELP}");
            2
        }
    }
}

/// Applies `--threads N` (0 or absent: rayon's default) to the global rayon pool.
pub(crate) fn set_threads(n: usize) -> Result<(), String> {
    if n > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("could not set {n} threads: {e}"))?;
    }
    Ok(())
}

/// Prints a usage error with the command's help and returns exit status 2.
pub(crate) fn usage_error(cmd: &str, msg: &str, help: &str) -> i32 {
    eprintln!("error: {cmd}: {msg}\n\n{help}");
    2
}

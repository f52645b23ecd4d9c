//! Writing to stdout the way Unix tools do: when the reader has gone away
//! (`sparsegrad gradcheck | head -1`) the program ends quietly with the conventional status
//! 141 (128 + SIGPIPE) instead of panicking in `println!`.

use std::io::{ErrorKind, Write};

/// Exit status after stdout was closed by its reader: 128 + SIGPIPE, as a shell reports a
/// tool killed by the signal.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `s` to stdout and flushes. A closed pipe ends the process quietly with
/// [`BROKEN_PIPE_STATUS`]; any other write error ends it with status 1 and a message.
pub fn write_str(s: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`write_str`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write_str(&format!($($arg)*)) };
}

/// `println!` through [`write_str`].
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write_str("\n") };
    ($($arg:tt)*) => {{
        let mut s = format!($($arg)*);
        s.push('\n');
        $crate::out::write_str(&s)
    }};
}

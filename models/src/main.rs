//! The `sparsegrad` program; see `sparsegrad --help`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(sparsegrad_models::commands::main(&args));
}

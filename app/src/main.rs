//! The `sparsegrad` program; see `sparsegrad --help`.

// No global allocator: the engine reuses large tensor buffers itself (`engine::recycle`), so
// this program runs as fast as any plain program that uses the library.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(sparsegrad::commands::main(&args));
}

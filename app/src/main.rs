//! The `sparsegrad` program; see `sparsegrad --help`.

/// Freed large tensors are kept for the next step instead of being faulted in again
/// (`engine::alloc`; `SPARSEGRAD_ALLOC_CACHE_MB=0` turns it off).
#[global_allocator]
static ALLOC: engine::alloc::CachingAlloc = engine::alloc::CachingAlloc::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(sparsegrad::commands::main(&args));
}

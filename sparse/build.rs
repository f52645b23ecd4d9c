//! Sets `cfg(sparsegrad_avx512)` as the engine's build script does (the same test, from
//! `engine/avx512_cfg.rs`): the kernels this crate builds with `engine::dispatched!` (LARS's
//! path and backward kernels, the spatial-contrasting loss's forward) then also get an AVX-512
//! build, chosen at run time when the CPU has AVX-512F. Without it (compilers before Rust 1.89)
//! they have the AVX2 + FMA and plain builds.

include!("../engine/avx512_cfg.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../engine/avx512_cfg.rs");
    emit_avx512_cfg();
}

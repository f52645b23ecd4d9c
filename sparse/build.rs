//! Sets `cfg(sparsegrad_avx512)` as the engine's build script does (the same test, from
//! `engine/avx512_cfg.rs`): the spatial-contrasting loss's element-wise passes then also get
//! an AVX-512 build, chosen at run time when the CPU has AVX-512F.

include!("../engine/avx512_cfg.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../engine/avx512_cfg.rs");
    emit_avx512_cfg();
}

//! Sets `cfg(sparsegrad_avx512)` when the compiler has the AVX-512 target features and
//! intrinsics (stable from Rust 1.89; the workspace's minimum is older). The direct convolution
//! kernels then also get an AVX-512 version, chosen at run time when the CPU has AVX-512F.
//! Without the cfg they use AVX2 + FMA (or the im2col + GEMM path).

include!("avx512_cfg.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=avx512_cfg.rs");
    emit_avx512_cfg();
}

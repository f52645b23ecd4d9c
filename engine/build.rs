//! Sets `cfg(sparsegrad_avx512)` when the compiler has the AVX-512 target features and
//! intrinsics (stable from Rust 1.89; the workspace's minimum is older). The direct convolution
//! kernels then also get an AVX-512 version, chosen at run time when the CPU has AVX-512F.
//! Without the cfg they use AVX2 + FMA (or the im2col + GEMM path).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(sparsegrad_avx512)");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc).arg("--version").output().ok().and_then(|o| String::from_utf8(o.stdout).ok());
    // "rustc 1.95.0 (59807616e 2026-04-14)" → minor version 95
    let minor = version.as_deref().and_then(|v| v.split_whitespace().nth(1)?.split('.').nth(1)?.parse::<u32>().ok());
    if x86_64 && minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=sparsegrad_avx512");
    }
}

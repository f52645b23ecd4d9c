// Shared by the build scripts of `engine` and `sparse` (each `include!`s it).

/// Sets `cfg(sparsegrad_avx512)` when the compiler has the AVX-512 target features and
/// intrinsics (stable from Rust 1.89; the workspace's minimum is older).
fn emit_avx512_cfg() {
    println!("cargo:rustc-check-cfg=cfg(sparsegrad_avx512)");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version =
        std::process::Command::new(rustc).arg("--version").output().ok().and_then(|o| String::from_utf8(o.stdout).ok());
    // "rustc 1.95.0 (59807616e 2026-04-14)" → minor version 95
    let minor = version.as_deref().and_then(|v| v.split_whitespace().nth(1)?.split('.').nth(1)?.parse::<u32>().ok());
    if x86_64 && minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=sparsegrad_avx512");
    }
}

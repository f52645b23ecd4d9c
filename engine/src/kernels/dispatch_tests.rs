//! One test over every SIMD kernel family of the engine, forced to each level of the one
//! dispatch enum [`Isa`] that this CPU runs (`sparse` has the same test for its LARS and
//! SC-loss kernels, `sparse::lars::kernels` and `sparse::scl`).

use std::mem::MaybeUninit;

use super::conv::{Conv2dParams, Path};
use super::matmul::{gemm_on, Backend, MatRef};
use super::simd::Isa;
use super::vmath::{self, Unary};
use crate::{Rng, Tensor};

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// What each family promises across levels:
/// * `vmath` (element-wise functions, row extremes, softmax, logsumexp): the same bits at
///   every level, `Generic` included (its module docs);
/// * the direct convolutions and the packed GEMM have no `Generic` version: at each level with
///   vectors they agree with im2col + GEMM and with `matrixmultiply` within rounding
///   (`1e-12·max(1, |want|)` for sums of products of unit normals, the tolerance of their own
///   tests): their vector width changes the order of additions. Forward and input gradient
///   of the direct kernels do not depend on the level at all (each output sums its taps in
///   order with one fused multiply-add each), which is checked bit for bit.
#[test]
fn every_kernel_family_at_every_level() {
    let levels = Isa::available();
    assert_eq!(levels[0], Isa::Generic);
    assert_eq!(*levels.last().unwrap(), Isa::best());
    let mut rng = Rng::new(31);
    let x: Vec<f64> = Tensor::<f64>::randn(&[4099], &mut rng).to_vec().iter().map(|v| 4.0 * v).collect();

    // vmath
    let vmath_at = |isa: Isa| {
        let mut out = Vec::new();
        for f in [Unary::Exp, Unary::Log1p, Unary::Tanh, Unary::Sigmoid] {
            let mut o = vec![MaybeUninit::uninit(); x.len()];
            vmath::map_uninit_at(isa, f, &x, &mut o);
            // SAFETY: `map_uninit_at` writes every element of `o`.
            out.extend(o.into_iter().map(|v| unsafe { v.assume_init() }));
        }
        let (m, i) = vmath::extreme_at(isa, &x, true, true);
        out.extend([m, i as f64]);
        for log in [false, true] {
            let mut sm = vec![MaybeUninit::uninit(); x.len() - 3];
            vmath::softmax_rows_at(isa, &x[..x.len() - 3], &mut sm, 1024, log);
            // SAFETY: `softmax_rows_at` writes every element of `sm`.
            out.extend(sm.into_iter().map(|v| unsafe { v.assume_init() }));
        }
        let mut lse = vec![0.0; 4];
        vmath::logsumexp_rows_at(isa, &x[..x.len() - 3], 1024, &mut lse);
        out.extend(lse);
        for n in [100, 1000] {
            let bases = [0, 7, 3000, 1, 2 * n];
            let mut sums = vec![0.0; bases.len()];
            vmath::sum_rows_at(isa, &x, &bases, n, &mut sums);
            out.extend(sums);
        }
        bits(&out)
    };
    let want = vmath_at(Isa::Generic);
    for &isa in &levels {
        assert!(vmath_at(isa) == want, "vmath at {} differs from generic", isa.name());
    }

    // packed GEMM vs matrixmultiply
    let (m, k, n) = (37, 129, 45);
    let (a, b) = (Tensor::<f64>::randn(&[m, k], &mut rng).to_vec(), Tensor::<f64>::randn(&[k, n], &mut rng).to_vec());
    let product = |backend: Backend| {
        let mut c = vec![0.0; m * n];
        gemm_on(backend, true, 1.0, MatRef::row_major(&a, 0, m, k), MatRef::row_major(&b, 0, k, n), 0.0, &mut c, 0, n);
        c
    };
    let want = product(Backend::MatrixMultiply);
    // direct convolutions vs im2col + GEMM
    let xc = Tensor::<f64>::randn(&[2, 3, 11, 10], &mut rng);
    let w = Tensor::<f64>::randn(&[5, 3, 3, 3], &mut rng);
    let p = Conv2dParams::new().padding(1);
    let gy = Tensor::<f64>::randn(&[2, 5, 11, 10], &mut rng);
    let conv = |path: Path| {
        [
            xc.conv2d_on(path, &w, None, p).to_vec(),
            Tensor::conv2d_backward_input_on(path, &gy, &w, [11, 10], p).to_vec(),
            Tensor::conv2d_backward_weight_on(path, &gy, &xc, [3, 3], p).to_vec(),
        ]
    };
    let conv_want = conv(Path::Gemm);
    let close = |got: &[f64], want: &[f64], what: &str| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{what}: element {i}: {g} vs {w}");
        }
    };
    let mut direct_first: Option<[Vec<f64>; 3]> = None;
    for &isa in levels.iter().filter(|&&isa| isa != Isa::Generic) {
        close(&product(Backend::Packed(isa)), &want, &format!("packed GEMM at {}", isa.name()));
        let got = conv(Path::Direct(isa));
        for (part, (g, w)) in ["forward", "input gradient", "weight gradient"].iter().zip(got.iter().zip(&conv_want)) {
            close(g, w, &format!("direct conv {part} at {}", isa.name()));
        }
        match &direct_first {
            None => direct_first = Some(got),
            Some(first) => {
                assert!(bits(&got[0]) == bits(&first[0]), "direct forward at {}", isa.name());
                assert!(bits(&got[1]) == bits(&first[1]), "direct input gradient at {}", isa.name());
            }
        }
    }
}

#[test]
fn a_level_above_the_cpus_panics_instead_of_running() {
    // `checked` guards every dispatch site; levels up to `best` pass through.
    for isa in Isa::available() {
        assert_eq!(isa.checked(), isa);
    }
    if Isa::best() < Isa::Avx512 {
        assert!(std::panic::catch_unwind(|| Isa::Avx512.checked()).is_err());
    }
}

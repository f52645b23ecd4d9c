//! End-to-end gradient checks of small networks, with respect to every parameter and the
//! input: an MLP (linear → relu → linear → cross-entropy) and a CNN (conv → max-pool → relu →
//! linear → cross-entropy). Default tolerances (eps 1e-6, atol 1e-7, rtol 1e-5).
//!
//! Both networks have kinks (relu, the max of each pooling window). Before checking, each test
//! asserts that the chosen inputs sit at least `KINK_MARGIN` away from every kink, so central
//! differences with eps = 1e-6 never cross one; if a seed is changed and this fails, pick
//! another seed rather than loosening anything.

use autograd::{check_gradients, CheckOptions, Reduction};
use sparsegrad_tests::{cnn, labels, mlp, randn, uniform, CNN_CONV};

/// Smallest distance from a kink accepted for relu inputs and between the two largest values
/// of a pooling window. A perturbation of 1e-6 of any input moves these values by far less.
const KINK_MARGIN: f64 = 1e-3;

#[test]
fn mlp_gradients_match_finite_differences() {
    let (n, d, h, c) = (5, 4, 6, 3);
    let inputs = vec![
        randn(&[n, d], 1),
        randn(&[h, d], 2).mul_scalar(0.5),
        randn(&[h], 3).mul_scalar(0.1),
        randn(&[c, h], 4).mul_scalar(0.5),
        randn(&[c], 5).mul_scalar(0.1),
    ];
    let y = labels(n, c, 6);
    let pre = inputs[0].matmul(&inputs[1].t()).add(&inputs[2]).to_vec();
    let closest = pre.iter().map(|v| v.abs()).fold(f64::INFINITY, f64::min);
    assert!(closest >= KINK_MARGIN, "a relu input is {closest:e} from its kink; pick another seed");
    assert!(pre.iter().any(|&v| v < 0.0), "no relu is inactive; the test would not exercise the kink convention");

    let report =
        check_gradients(|_, v| mlp(v).cross_entropy(&y, Reduction::Mean), &inputs, &CheckOptions::default()).unwrap();
    assert_eq!(report.inputs.len(), 5);
    assert!(report.passed(), "{report}");
    assert!(report.inputs.iter().all(|r| r.checked == r.shape.iter().product::<usize>()));
}

/// Distance between the largest and second largest value of every 2×2 window of `t`
/// `[N, C, H, W]`, and the smallest |max| (the relu input after pooling).
fn pool_margins(t: &engine::Tensor<f64>) -> (f64, f64) {
    let s = t.shape().to_vec();
    let (mut gap, mut level) = (f64::INFINITY, f64::INFINITY);
    for n in 0..s[0] {
        for c in 0..s[1] {
            for a in 0..s[2] / 2 {
                for b in 0..s[3] / 2 {
                    let mut w: Vec<f64> = (0..4).map(|k| t.get(&[n, c, 2 * a + k / 2, 2 * b + k % 2])).collect();
                    w.sort_by(f64::total_cmp);
                    gap = gap.min(w[3] - w[2]);
                    level = level.min(w[3].abs());
                }
            }
        }
    }
    (gap, level)
}

#[test]
fn cnn_gradients_match_finite_differences() {
    let (n, ch, hw, f, k) = (2, 2, 6, 3, 4);
    let flat = f * (hw / 2) * (hw / 2);
    let inputs = vec![
        randn(&[n, ch, hw, hw], 11),
        randn(&[f, ch, 3, 3], 12).mul_scalar(0.3),
        uniform(&[f], -0.1, 0.1, 13),
        randn(&[k, flat], 14).mul_scalar(0.3),
        uniform(&[k], -0.1, 0.1, 15),
    ];
    let y = labels(n, k, 16);
    let conv = inputs[0].conv2d(&inputs[1], Some(&inputs[2]), CNN_CONV);
    let (gap, level) = pool_margins(&conv);
    assert!(gap >= KINK_MARGIN, "a pooling window has a near tie ({gap:e}); pick another seed");
    assert!(level >= KINK_MARGIN, "a relu input is {level:e} from its kink; pick another seed");

    let report =
        check_gradients(|_, v| cnn(v).cross_entropy(&y, Reduction::Mean), &inputs, &CheckOptions::default()).unwrap();
    assert_eq!(report.inputs.len(), 5);
    assert!(report.passed(), "{report}");
    // Every element of every parameter and of the input was compared.
    assert!(report.inputs.iter().all(|r| r.checked == r.shape.iter().product::<usize>()));
}

#[test]
fn cnn_on_a_non_contiguous_batch_matches_the_contiguous_one() {
    // The same CNN on the input given as a permuted (NHWC storage) view: identical loss and
    // gradients, so the layout handling of every op on the path is consistent.
    let (n, ch, hw, f, k) = (2, 2, 4, 2, 3);
    let x = randn(&[n, ch, hw, hw], 21);
    let nhwc = x.permute(&[0, 2, 3, 1]).contiguous().permute(&[0, 3, 1, 2]);
    assert!(!nhwc.is_contiguous());
    let params =
        [randn(&[f, ch, 3, 3], 22), randn(&[f], 23), randn(&[k, f * (hw / 2) * (hw / 2)], 24), randn(&[k], 25)];
    let y = labels(n, k, 26);
    let run = |x: engine::Tensor<f64>| {
        let inputs: Vec<_> = std::iter::once(x).chain(params.iter().cloned()).collect();
        sparsegrad_tests::vjp(|_, v| cnn(v).cross_entropy(&y, Reduction::Sum), &inputs, None)
    };
    let (l1, g1) = run(x);
    let (l2, g2) = run(nhwc);
    assert_eq!(l1.to_vec(), l2.to_vec());
    for (a, b) in g1.iter().zip(&g2) {
        sparsegrad_tests::assert_close("gradient", &a.to_vec(), &b.to_vec(), 1e-13);
    }
}

//! Double sparsity with a fixed DCT dictionary (docs/math.md §3): the atoms, their counts and
//! layout, the fixed convolution (no weight gradient), the effective kernels, the shrinkage
//! post-step and the zero counts. The finite-difference audit of the layer is the `dct_conv`
//! family of `sparse::audit` (run by `tests/tests/gradcheck_ops.rs` and `sparsegrad gradcheck`).

use autograd::optim::{L1Prox, Optimizer, PostStep, Sgd};
use autograd::{BackwardOptions, Error, Tape};
use engine::{Conv2dParams, Rng, Tensor};
use sparsegrad_sparse::dct::{
    dct_dictionary, dct_factors, dct_filters, effective_kernels, folded_bias, kron, odct, zero_fraction,
    zero_fractions, DctConv, Shrink,
};

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, &mut Rng::new(seed))
}

#[track_caller]
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "{what}: element {i} is {a:e}, expected {b:e}");
    }
}

/// Column `j` of a matrix.
fn column(t: &Tensor<f64>, j: usize) -> Vec<f64> {
    (0..t.dim(0)).map(|i| t.get(&[i, j])).collect()
}

#[test]
fn odct_matches_hand_derived_columns() {
    // k = 2, p = 2: D1[i, j] = cos(i·j·π/2). Column 0 = [1, 1]/√2. Column 1 = [cos 0, cos(π/2)]
    // = [1, 0], minus its mean ½ → [½, −½], over its norm 1/√2 → [1/√2, −1/√2].
    let h = std::f64::consts::FRAC_1_SQRT_2;
    assert_close("odct(2, 2)", &odct(2, 2).to_vec(), &[h, h, h, -h], 1e-15);
    // k = 3, p = 2: column 1 = cos(i·π/2) = [1, 0, −1], mean 0 → [1, 0, −1]/√2.
    assert_close("odct(3, 2) column 1", &column(&odct(3, 2), 1), &[h, 0.0, -h], 1e-15);
    // k = 3, p = 3: column 1 = cos(i·π/3) = [1, ½, −½], mean ⅓ → [⅔, ⅙, −⅚], norm √(42)/6.
    let n = 42f64.sqrt() / 6.0;
    assert_close(
        "odct(3, 3) column 1",
        &column(&odct(3, 3), 1),
        &[2.0 / 3.0 / n, 1.0 / 6.0 / n, -5.0 / 6.0 / n],
        1e-15,
    );
}

#[test]
fn every_atom_has_unit_norm_and_the_dc_atom_is_constant() {
    for (k, p) in [(2, 1), (3, 3), (5, 7), (5, 12), (96, 16), (192, 24)] {
        let d = odct(k, p);
        for j in 0..p {
            let col = column(&d, j);
            let norm: f64 = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-14, "odct({k}, {p}) column {j}: norm {norm}");
            if j > 0 {
                let mean: f64 = col.iter().sum::<f64>() / k as f64;
                assert!(mean.abs() < 1e-15, "odct({k}, {p}) column {j}: mean {mean}");
            }
        }
        // The DC atom: constant 1/√k.
        assert!(column(&d, 0).iter().all(|&v| (v - 1.0 / (k as f64).sqrt()).abs() < 1e-15), "odct({k}, {p})");
    }
    // The 3-D dictionaries' columns (Kronecker products of unit vectors) are unit too.
    for (c, k, f) in [(3, 5, 192), (1, 5, 20), (2, 3, 10), (96, 5, 192)] {
        let phi = dct_dictionary::<f64>(c, k, f);
        assert_eq!(phi.shape(), &[c * k * k, f]);
        let norms = phi.square().sum(&[0], false).to_vec();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-13), "C = {c}, k = {k}, F = {f}: {norms:?}");
        // Column 0 is the DC atom of the whole receptive field: constant 1/√(C·k·k).
        let dc = 1.0 / ((c * k * k) as f64).sqrt();
        assert!(column(&phi, 0).iter().all(|&v| (v - dc).abs() < 1e-15));
    }
}

#[test]
fn atom_counts_of_the_worked_example_and_of_nin() {
    // docs/math.md §3: C = 3, k = 5, F = 192 → n = (5, 7, 7), 245 atoms, the first 192 kept.
    //   d = 3: (27/75)^½·192 = 115.2, ∛ = 4.87 → 5;   d = 5: (125/75)^½·192 = 247.9, ∛ = 6.28 → 7
    assert_eq!(dct_factors(3, 5, 192), vec![(3, 5), (5, 7), (5, 7)]);
    let layer = DctConv::<f32>::new(3, 192, 5, Conv2dParams::new().padding(2));
    assert_eq!(layer.atoms(), 245);
    assert_eq!(layer.filters().shape(), &[192, 3, 5, 5]);
    // The other two k×k layers of NiN (96 → 192 5×5, 192 → 192 3×3):
    //   d = 96: (96³/2400)^½·192 = 3686.4, ∛ = 15.45 → 16;  d = 5: (125/2400)^½·192 = 43.8, ∛ = 3.53 → 4
    //   d = 192: (192³/1728)^½·192 = 12288, ∛ = 23.08 → 24; d = 3: (27/1728)^½·192 = 24, ∛ = 2.88 → 3
    assert_eq!(dct_factors(96, 5, 192), vec![(96, 16), (5, 4), (5, 4)]);
    assert_eq!(dct_factors(192, 3, 192), vec![(192, 24), (3, 3), (3, 3)]);
    // The three layers' fixed weights are the parameters the double-sparsity NiN stops training:
    // 966,986 − 160,010 = 806,976 (the seed's Fig. 4).
    let fixed: usize = [(3, 5), (96, 5), (192, 3)].iter().map(|&(c, k)| 192 * c * k * k).sum();
    assert_eq!(fixed, 966_986 - 160_010);
}

#[test]
fn atom_counts_for_one_channel_and_exact_integers() {
    // C = 1: odct(k, n) ⊗ odct(k, n) with n = ⌈√F⌉.
    assert_eq!(dct_factors(1, 5, 20), vec![(5, 5), (5, 5)]); // √20 = 4.47 → 5, 25 atoms
    assert_eq!(dct_factors(1, 5, 16), vec![(5, 4), (5, 4)]); // √16 = 4 exactly: 16 atoms, all kept
    assert_eq!(dct_factors(1, 3, 17), vec![(3, 5), (3, 5)]); // 4.12 → 5
    let layer = DctConv::<f64>::new(1, 20, 5, Conv2dParams::new());
    assert_eq!((layer.atoms(), layer.filters().shape()), (25, &[20, 1, 5, 5][..]));
    // C = 3, k = 3, F = 27: (27/27)^½·27 = 27 and ∛27 = 3 exactly for every factor. The count is
    // the smallest n with n⁶·C·k² ≥ d³·F² (729·27 ≥ 27·729): 3, not a rounded-up 4.
    assert_eq!(dct_factors(3, 3, 27), vec![(3, 3), (3, 3), (3, 3)]);
    // The product of the counts always reaches F.
    for (c, k, f) in [(2, 3, 10), (7, 3, 50), (64, 3, 128), (3, 7, 300), (5, 2, 33)] {
        let n: usize = dct_factors(c, k, f).iter().map(|&(_, n)| n).product();
        assert!(n >= f, "C = {c}, k = {k}, F = {f}: {n} atoms");
    }
}

#[test]
fn the_kronecker_column_order_is_the_conv_weight_layout() {
    // Filter f = (j1·n2 + j2)·n3 + j3 is φ[c, y, x] = D1[c, j1]·D2[y, j2]·D3[x, j3].
    let (c, k, f) = (3, 5, 192);
    let filters = dct_filters::<f64>(c, k, f);
    let (d1, d2, d3) = (odct(3, 5), odct(5, 7), odct(5, 7));
    for fi in [0, 1, 6, 7, 48, 49, 100, 191] {
        let (j1, j2, j3) = (fi / 49, fi / 7 % 7, fi % 7);
        for (ci, y, x) in [(0, 0, 0), (1, 2, 3), (2, 4, 1), (2, 0, 4)] {
            let want = d1.get(&[ci, j1]) * d2.get(&[y, j2]) * d3.get(&[x, j3]);
            let got = filters.get(&[fi, ci, y, x]);
            assert!((got - want).abs() < 1e-15, "filter {fi} at ({ci}, {y}, {x}): {got} vs {want}");
        }
    }
    // The same through conv2d: a separable patch u ⊗ v ⊗ w (C × k × k, no padding) gives one
    // output per filter, (D1ᵀu)_{j1}·(D2ᵀv)_{j2}·(D3ᵀw)_{j3} — the conv reads the taps in the
    // order the Kronecker product built them.
    let (u, v, w) = (randn(&[3], 1), randn(&[5], 2), randn(&[5], 3));
    let patch = Tensor::from_fn(&[1, 3, 5, 5], |i| u.get(&[i[1]]) * v.get(&[i[2]]) * w.get(&[i[3]]));
    let layer = DctConv::<f64>::new(c, f, k, Conv2dParams::new());
    let tape = Tape::new();
    let y = layer.pre_activation(&tape.constant(patch), &tape.constant(Tensor::zeros(&[f]))).value();
    assert_eq!(y.shape(), &[1, f, 1, 1]);
    let (pu, pv, pw) = (d1.t().matmul(&u), d2.t().matmul(&v), d3.t().matmul(&w));
    let want: Vec<f64> = (0..f).map(|fi| pu.get(&[fi / 49]) * pv.get(&[fi / 7 % 7]) * pw.get(&[fi % 7])).collect();
    assert_close("conv of a separable patch", &y.to_vec(), &want, 1e-13);
    // And kron itself on a hand-checkable case: [[1, 2]] ⊗ [[0, 1], [1, 0]] = [[0, 1, 0, 2], [1, 0, 2, 0]].
    let k2 = kron(&Tensor::from_vec(vec![1.0, 2.0], &[1, 2]), &Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0], &[2, 2]));
    assert_eq!((k2.shape(), k2.to_vec()), (&[2, 4][..], vec![0.0, 1.0, 0.0, 2.0, 1.0, 0.0, 2.0, 0.0]));
}

#[test]
fn the_filters_get_no_gradient_and_conv2d_computes_none() {
    // The filters enter the tape as a constant: conv2d's rule is told needed = false for them
    // and returns no weight gradient. Made observable in f32 with anomaly mode, which checks
    // every gradient a rule returns, needed or not: with x = 2⁶³ and an output gradient of 2⁶⁶
    // (powers of two, so the sums below are exact), ∂x = Σ g·φ ≤ 4·9·2⁶⁶ and ∂b = Σ g = 16·2⁶⁶
    // are finite, but the weight gradient Σ_positions g·x = 16·2⁶⁶·2⁶³ = 2¹³³ would overflow
    // f32 (whose largest value is below 2¹²⁸) to ∞.
    let layer = DctConv::<f32>::new(1, 4, 3, Conv2dParams::new());
    let run = |weight_is_leaf: bool| {
        let tape = Tape::new();
        tape.set_anomaly_mode(true);
        let x = tape.leaf(Tensor::full(&[1, 1, 6, 6], 2f32.powi(63)));
        let b = tape.leaf(Tensor::zeros(&[4]));
        let z = if weight_is_leaf {
            let w = tape.leaf(layer.filters().clone());
            x.conv2d(&w, Some(&b), layer.conv)
        } else {
            layer.pre_activation(&x, &b)
        };
        assert!(tape.forward_anomaly().is_none(), "the forward is finite");
        let seed = Tensor::full(&z.shape(), 2f32.powi(66));
        tape.backward_with(&z, Some(seed), BackwardOptions::default()).map(|g| (g.wrt(&x), g.wrt(&b)))
    };
    let (gx, gb) = run(false).expect("no weight gradient computed, so nothing overflows");
    assert!(gx.to_vec().iter().chain(&gb.to_vec()).all(|v| v.is_finite()));
    assert_eq!(gb.to_vec(), vec![2f32.powi(70); 4]); // ∂b_f = Σ over the 4×4 outputs of 2⁶⁶
                                                     // Control: the same convolution with the filters as a leaf computes the weight gradient,
                                                     // and anomaly mode reports its overflow — so the check above can fail.
    match run(true) {
        Err(Error::Anomaly { op, what, .. }) => {
            assert_eq!(op, "conv2d");
            assert!(what.contains("input 1"), "{what}");
        }
        other => panic!("expected an overflowing weight gradient, got {other:?}"),
    }
    // And on a real forward: gradients reach x and the bias, none is kept for the filters.
    let tape = Tape::new();
    let x = tape.leaf(randn(&[2, 1, 6, 6], 4).cast::<f32>());
    let b = tape.leaf(Tensor::zeros(&[4]));
    let g = tape.backward(&layer.forward(&x, &b).sum_all()).unwrap();
    assert_eq!(g.len(), 2);
    assert!(tape.graph().contains("conv2d") && tape.graph().contains("relu"));
}

#[test]
fn dct_conv_then_1x1_conv_equals_one_conv_with_the_effective_kernels() {
    // z = conv1x1(conv(x, Φ) + b1, W) + b2 = conv(x, Φ·W) + (W·b1 + b2): the linear part (the
    // layer's ReLU sits between the two and is left out). With stride and padding, in f64.
    for (c, f, k, conv) in
        [(3, 20, 5, Conv2dParams::new().padding(2)), (1, 9, 3, Conv2dParams::new().stride(2).padding(1))]
    {
        let layer = DctConv::<f64>::new(c, f, k, conv);
        let f_out = 7;
        let x = randn(&[2, c, 9, 8], 5);
        let b1 = layer.bias_init(&mut Rng::new(6));
        let w = randn(&[f_out, f, 1, 1], 7);
        let b2 = randn(&[f_out], 8);
        let tape = Tape::new();
        let h = layer.pre_activation(&tape.constant(x.clone()), &tape.constant(b1.clone()));
        let z = h.conv2d(&tape.constant(w.clone()), Some(&tape.constant(b2.clone())), Conv2dParams::new());
        let d = layer.effective_kernels(&w);
        assert_eq!(d.shape(), &[f_out, c, k, k]);
        let folded = x.conv2d(&d, Some(&folded_bias(&w, &b1, &b2)), conv);
        assert_close(&format!("C = {c}, F = {f}, k = {k}"), &z.value().to_vec(), &folded.to_vec(), 1e-12);
        // D_o = Σ_f W[o, f]·φ_f, element by element for one kernel.
        let phi = layer.filters();
        let want: Vec<f64> = (0..c * k * k)
            .map(|t| (0..f).map(|fi| w.get(&[3, fi, 0, 0]) * phi.reshape(&[f, c * k * k]).get(&[fi, t])).sum())
            .collect();
        assert_close("D_3", &d.reshape(&[f_out, c * k * k]).select(0, 3).to_vec(), &want, 1e-13);
        // The [F_out, F] form of W gives the same kernels.
        assert_eq!(effective_kernels(phi, &w.reshape(&[f_out, f])).to_vec(), d.to_vec());
    }
    // The bias is drawn as the authors' reset: U(−1/√(C·k·k), 1/√(C·k·k)).
    let layer = DctConv::<f64>::new(3, 192, 5, Conv2dParams::new());
    let b = layer.bias_init(&mut Rng::new(9)).to_vec();
    assert!(b.iter().all(|v| v.abs() < 1.0 / 75f64.sqrt()) && b.iter().any(|&v| v < 0.0) && b.iter().any(|&v| v > 0.0));
}

#[test]
fn shrink_on_hand_derived_values() {
    // ζ = 0.25 (all values exact in binary). The paper's Shrink: w − ζ·sign(w) where |w| > ζ,
    // else 0; |w| = ζ is the "else".
    //   [1, −1, 0.25, −0.5, 0.125, 0] → [0.75, −0.75, 0, −0.25, 0, 0], whatever lr is.
    let w0 = Tensor::<f64>::from([1.0, -1.0, 0.25, -0.5, 0.125, 0.0]);
    let mut w = w0.clone();
    PostStep::<f64>::apply(&Shrink::new(0.25), &mut w, 0.5);
    assert_eq!(w.to_vec(), vec![0.75, -0.75, 0.0, -0.25, 0.0, 0.0]);
    // The proximal form, threshold lr·ζ = 0.125 at lr = 0.5 (|0.125| = τ → 0):
    //   [0.875, −0.875, 0.125, −0.375, 0, 0] — exactly L1Prox's step.
    let mut w = w0.clone();
    PostStep::<f64>::apply(&Shrink::proximal(0.25), &mut w, 0.5);
    assert_eq!(w.to_vec(), vec![0.875, -0.875, 0.125, -0.375, 0.0, 0.0]);
    let mut w2 = w0.clone();
    PostStep::<f64>::apply(&L1Prox { zeta: 0.25 }, &mut w2, 0.5);
    assert_eq!(w.to_vec(), w2.to_vec());

    // Attached by name, after the SGD update: lr = 0.5, g = [0.5, 0, 0, 0, 0, 0] →
    // w = [0.75, −1, 0.25, −0.5, 0.125, 0], then Shrink(ζ = 0.25) → [0.5, −0.75, 0, −0.25, 0, 0];
    // the other parameter is untouched.
    let names = vec!["dct1.bias".to_string(), "cccp1.weight".to_string()];
    let mut bias = Tensor::<f64>::from([0.1, -0.1]);
    let mut coef = w0;
    let mut opt = Sgd::new(0.5).with_post_step("cccp1.weight", Shrink::new(0.25));
    let grads = [None, Some(Tensor::from([0.5, 0.0, 0.0, 0.0, 0.0, 0.0]))];
    opt.step_named(&names, &mut [&mut bias, &mut coef], &grads);
    assert_eq!(coef.to_vec(), vec![0.5, -0.75, 0.0, -0.25, 0.0, 0.0]);
    assert_eq!(bias.to_vec(), vec![0.1, -0.1]);
    // Zero fractions by name: 3 exact zeros of 6.
    assert_eq!(zero_fraction(&coef), 0.5);
    let fr = zero_fractions(&names, &[&bias, &coef], &["cccp1.weight", "dct1.bias"]);
    assert_eq!(fr, vec![("cccp1.weight".to_string(), 0.5), ("dct1.bias".to_string(), 0.0)]);
}

#[test]
fn zero_fraction_counts_exact_zeros_only() {
    let t = Tensor::<f32>::from_vec(vec![0.0, -0.0, 1e-30, 3.0, 0.0, -2.0, 0.0, 1e-45], &[2, 4]);
    assert_eq!(zero_fraction(&t), 0.5); // 0.0 ×3 and −0.0; 1e-30 and the subnormal 1e-45 are not 0
    assert_eq!(zero_fraction(&Tensor::<f64>::zeros(&[0])), 0.0);
    // A transposed view counts the same elements.
    assert_eq!(zero_fraction(&t.t()), 0.5);
}

#[test]
#[should_panic(expected = "zero_fractions: no parameter named `cccp2.weight` among [\"cccp1.weight\"]")]
fn zero_fractions_name_the_missing_parameter() {
    let w = Tensor::<f64>::zeros(&[2]);
    zero_fractions(&["cccp1.weight".to_string()], &[&w], &["cccp2.weight"]);
}

#[test]
#[should_panic(expected = "DctConv: needs dilation 1 and one group")]
fn grouped_dct_convolutions_are_refused() {
    DctConv::<f64>::new(4, 8, 3, Conv2dParams::new().groups(2));
}

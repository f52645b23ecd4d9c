//! Tests of the convolution kernels against [`super::naive`].

use super::*;
use crate::Rng;

fn randn(shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    Tensor::randn(shape, rng)
}

fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec().iter().zip(b.to_vec()).map(|(x, y)| x * y).sum()
}

/// |a − b| ≤ tol·max(1, |a|, |b|), the scale of a sum of products of unit normals.
fn assert_close_scalar(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0), "{what}: {a} vs {b}");
}

#[track_caller]
fn assert_close(got: &Tensor<f64>, want: &Tensor<f64>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    for (i, (a, b)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{what}: element {i}: {a} vs {b}");
    }
}

/// A non-contiguous view holding the same values as a fresh `[a, b, c, d]` tensor: the
/// data is stored with axes permuted and every other width column skipped.
fn strided_copy(t: &Tensor<f64>) -> Tensor<f64> {
    let s = t.shape().to_vec();
    let padded = Tensor::from_fn(&[s[2], s[0], 2 * s[3], s[1]], |ix| {
        if ix[2] % 2 == 0 {
            t.get(&[ix[1], ix[3], ix[0], ix[2] / 2])
        } else {
            f64::NAN
        }
    });
    let v = padded.permute(&[1, 3, 0, 2]).slice(3, 0, 2 * s[3], 2);
    assert!(!v.is_contiguous());
    assert_eq!(v.to_vec(), t.to_vec());
    v
}

/// (n, c, h, w, o, kh, kw, stride, padding, dilation, groups)
type Case = (usize, usize, usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], usize);

fn cases() -> Vec<Case> {
    vec![
        (1, 1, 5, 5, 1, 3, 3, [1, 1], [0, 0], [1, 1], 1),
        (3, 3, 7, 6, 4, 3, 3, [1, 1], [1, 1], [1, 1], 1),
        (3, 2, 9, 11, 3, 3, 2, [2, 3], [1, 2], [1, 1], 1),
        (1, 4, 9, 9, 6, 3, 2, [2, 2], [1, 0], [1, 1], 2),
        (3, 2, 8, 7, 2, 3, 3, [1, 1], [2, 2], [2, 2], 1),
        (1, 3, 11, 9, 4, 4, 3, [2, 3], [2, 1], [1, 2], 1),
        (3, 6, 6, 5, 6, 3, 3, [1, 1], [1, 1], [1, 1], 6),    // depthwise
        (3, 6, 6, 5, 12, 3, 3, [3, 1], [2, 0], [1, 2], 3),   // depthwise multiplier 2
        (3, 5, 4, 6, 7, 1, 1, [1, 1], [0, 0], [1, 1], 1),    // pointwise fast path
        (1, 4, 5, 3, 6, 1, 1, [1, 1], [0, 0], [1, 1], 2),    // pointwise, groups
        (3, 4, 5, 5, 3, 1, 1, [2, 2], [1, 1], [1, 1], 1),    // 1×1 with stride and padding
        (9, 5, 4, 4, 7, 4, 4, [1, 1], [0, 0], [1, 1], 1),    // L = 1: one chunk, split GEMMs
        (9, 6, 3, 3, 4, 1, 1, [1, 1], [0, 0], [1, 1], 2),    // pointwise, L = 9 gathered
        (5, 3, 6, 6, 4, 3, 3, [1, 1], [0, 0], [1, 1], 1),    // L = 16, several images per GEMM
        (50, 2, 6, 6, 3, 3, 3, [1, 1], [0, 0], [1, 1], 1),   // the same in parallel chunks
        (50, 4, 4, 4, 6, 1, 1, [1, 1], [0, 0], [1, 1], 2),   // pointwise, gathered, parallel
        (1025, 2, 2, 2, 3, 2, 2, [1, 1], [0, 0], [1, 1], 1), // L = 1 in parallel chunks
        (2, 2, 3, 3, 2, 5, 5, [1, 1], [2, 2], [1, 1], 1),    // kernel larger than input
        (2, 3, 5, 4, 2, 2, 2, [3, 3], [1, 0], [2, 1], 1),
        (10, 2, 16, 16, 3, 3, 3, [1, 1], [1, 1], [1, 1], 1), // 5 partials of 2 GEMMs each
        (2, 3, 20, 23, 4, 3, 3, [1, 1], [1, 1], [1, 1], 1),  // row blocks, split GEMMs
        (1, 4, 37, 19, 6, 3, 2, [2, 1], [2, 1], [2, 1], 2),  // row blocks with padding
        (3, 1, 28, 28, 20, 5, 5, [1, 1], [0, 0], [1, 1], 1), // LeNet's first layer, small batch
        (2, 3, 12, 13, 17, 3, 3, [1, 1], [1, 1], [1, 1], 1), // CSC stem shape; 17 channels
        (2, 3, 5, 6, 4, 2, 3, [1, 1], [3, 2], [1, 1], 1),    // padding beyond the kernel
        (2, 4, 9, 8, 6, 2, 3, [1, 1], [2, 1], [3, 2], 2),    // dilated, groups
        (2, 2, 7, 9, 3, 1, 5, [1, 1], [0, 2], [1, 1], 1),    // 1×5 kernel
        (9, 7, 3, 4, 5, 2, 2, [1, 1], [0, 0], [1, 1], 1),    // 2×3 outputs, several runs
    ]
}

fn setup(case: Case, rng: &mut Rng) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>, Conv2dParams) {
    let (n, c, h, w, o, kh, kw, s, p, d, g) = case;
    let params = Conv2dParams::new().stride2(s).padding2(p).dilation2(d).groups(g);
    (randn(&[n, c, h, w], rng), randn(&[o, c / g, kh, kw], rng), randn(&[o], rng), params)
}

#[test]
fn conv2d_matches_naive_on_contiguous_and_strided_inputs() {
    let mut rng = Rng::new(11);
    for case in cases() {
        let (x, w, b, p) = setup(case, &mut rng);
        let want = naive::conv2d(&x, &w, Some(&b), p);
        let want_nb = naive::conv2d(&x, &w, None, p);
        let (xs, ws) = (strided_copy(&x), strided_copy(&w));
        for path in Path::all() {
            assert_close(&x.conv2d_on(path, &w, Some(&b), p), &want, &format!("{path:?} {case:?}"));
            assert_close(&xs.conv2d_on(path, &ws, Some(&b), p), &want, &format!("{path:?} strided {case:?}"));
            assert_close(&x.conv2d_on(path, &w, None, p), &want_nb, &format!("{path:?} no bias {case:?}"));
        }
    }
}

#[test]
fn backward_kernels_match_naive() {
    let mut rng = Rng::new(12);
    for case in cases() {
        let (x, w, _, p) = setup(case, &mut rng);
        let (hw, khw) = ([x.dim(2), x.dim(3)], [w.dim(2), w.dim(3)]);
        let gy = randn(naive::conv2d(&x, &w, None, p).shape(), &mut rng);
        let want_dx = naive::conv2d_backward_input(&gy, &w, hw, p);
        let want_dw = naive::conv2d_backward_weight(&gy, &x, khw, p);
        let (gs, ws, xs) = (strided_copy(&gy), strided_copy(&w), strided_copy(&x));
        for path in Path::all() {
            let what = format!("{path:?} {case:?}");
            assert_close(&Tensor::conv2d_backward_input_on(path, &gy, &w, hw, p), &want_dx, &what);
            assert_close(&Tensor::conv2d_backward_weight_on(path, &gy, &x, khw, p), &want_dw, &what);
            assert_close(&Tensor::conv2d_backward_input_on(path, &gs, &ws, hw, p), &want_dx, &what);
            assert_close(&Tensor::conv2d_backward_weight_on(path, &gs, &xs, khw, p), &want_dw, &what);
        }
    }
}

#[test]
fn adjoint_identities_hold() {
    let mut rng = Rng::new(13);
    for case in cases() {
        let (x, w, _, p) = setup(case, &mut rng);
        let (hw, khw) = ([x.dim(2), x.dim(3)], [w.dim(2), w.dim(3)]);
        let y = x.conv2d(&w, None, p);
        let r = randn(y.shape(), &mut rng);
        let lhs = dot(&y, &r);
        let what = format!("{case:?}");
        assert_close_scalar(lhs, dot(&x, &Tensor::conv2d_backward_input(&r, &w, hw, p)), 1e-12, &what);
        assert_close_scalar(lhs, dot(&w, &Tensor::conv2d_backward_weight(&r, &x, khw, p)), 1e-12, &what);
    }
}

#[test]
fn im2col_matches_naive_and_col2im_is_its_adjoint() {
    let mut rng = Rng::new(14);
    for case in cases() {
        let (x, w, _, p) = setup(case, &mut rng);
        let khw = [w.dim(2), w.dim(3)];
        let cols = x.im2col(khw, p);
        assert_close(&cols, &naive::im2col(&x, khw, p), &format!("{case:?}"));
        assert_close(&strided_copy(&x).im2col(khw, p), &cols, &format!("strided {case:?}"));
        let c = randn(cols.shape(), &mut rng);
        let back = Tensor::col2im(&c, [x.dim(0), x.dim(1), x.dim(2), x.dim(3)], khw, p);
        assert_close_scalar(dot(&cols, &c), dot(&x, &back), 1e-12, &format!("{case:?}"));
    }
}

#[test]
fn im2col_times_weight_is_conv2d() {
    // conv2d(x, W)[n] = W.reshape([O, C·kh·kw]) · im2col(x)[n] for groups = 1.
    let mut rng = Rng::new(15);
    let (x, w, _, p) = setup((2, 3, 7, 6, 4, 3, 2, [2, 1], [1, 1], [1, 2], 1), &mut rng);
    let cols = x.im2col([3, 2], p);
    let y = w.reshape(&[4, 18]).matmul(&cols).reshape(&[2, 4, 4, 6]);
    assert_close(&y, &x.conv2d(&w, None, p), "im2col · W");
}

/// (n, c_in, h, w, c_out, kh, kw, stride, padding, output_padding, dilation, groups)
type TCase = (usize, usize, usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2], usize);

fn transposed_cases() -> Vec<TCase> {
    vec![
        (2, 4, 5, 5, 3, 3, 3, [1, 1], [1, 1], [0, 0], [1, 1], 1),
        (1, 4, 4, 5, 2, 3, 3, [2, 2], [1, 1], [1, 1], [1, 1], 2),
        (2, 2, 3, 4, 3, 4, 4, [2, 2], [1, 1], [0, 0], [1, 1], 1),
        (1, 3, 4, 4, 2, 3, 2, [2, 3], [1, 0], [1, 2], [1, 1], 1),
        (3, 2, 5, 5, 2, 3, 3, [1, 1], [2, 2], [0, 0], [2, 2], 1),
        (3, 2, 4, 3, 4, 2, 3, [1, 2], [0, 1], [1, 2], [2, 3], 2), // output_padding ≥ stride
        (5, 6, 1, 1, 3, 4, 4, [1, 1], [0, 0], [0, 0], [1, 1], 3), // 1×1 input
        (3, 5, 4, 6, 7, 1, 1, [1, 1], [0, 0], [0, 0], [1, 1], 1), // pointwise
        (2, 3, 4, 5, 2, 3, 3, [1, 1], [1, 1], [1, 1], [2, 2], 1), // stride 1, output_padding 1
        (3, 8, 6, 7, 3, 3, 3, [1, 1], [1, 1], [0, 0], [1, 1], 1), // CSC: 8 → 3 channels
        (2, 3, 5, 6, 4, 2, 3, [1, 1], [2, 1], [0, 0], [1, 1], 1), // padding beyond the kernel
    ]
}

fn transposed_setup(case: TCase, rng: &mut Rng) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>, ConvTranspose2dParams) {
    let (n, cin, h, w, cout, kh, kw, s, p, op, d, g) = case;
    let params = ConvTranspose2dParams::new().stride2(s).padding2(p).output_padding2(op).dilation2(d).groups(g);
    (randn(&[n, cin, h, w], rng), randn(&[cin, cout / g, kh, kw], rng), randn(&[cout], rng), params)
}

#[test]
fn conv_transpose2d_matches_naive_and_is_the_adjoint_of_conv2d() {
    let mut rng = Rng::new(16);
    for (case, path) in transposed_cases().into_iter().flat_map(|c| Path::all().into_iter().map(move |p| (c, p))) {
        let (z, w, b, p) = transposed_setup(case, &mut rng);
        let what = format!("{path:?} {case:?}");
        let y = z.conv_transpose2d_on(path, &w, Some(&b), p);
        assert_close(&y, &naive::conv_transpose2d(&z, &w, Some(&b), p), &what);
        assert_close(&strided_copy(&z).conv_transpose2d_on(path, &strided_copy(&w), Some(&b), p), &y, &what);
        let [h, wd] = p.output_hw([z.dim(2), z.dim(3)], [w.dim(2), w.dim(3)]).unwrap();
        assert_eq!(y.shape(), &[z.dim(0), w.dim(1) * p.groups, h, wd]);
        // ⟨conv_transpose2d(z, W), x⟩ = ⟨z, conv2d(x, W)[.., :H, :W]⟩
        let x = randn(y.shape(), &mut rng);
        let zt = z.conv_transpose2d_on(path, &w, None, p);
        let cx = Tensor::conv_transpose2d_backward_input_on(path, &x, &w, [z.dim(2), z.dim(3)], p);
        assert_close_scalar(dot(&zt, &x), dot(&z, &cx), 1e-12, &what);
        let full = x.conv2d_on(path, &w, None, p.as_conv());
        assert_close(&cx, &full.narrow(2, 0, z.dim(2)).narrow(3, 0, z.dim(3)), &what);
        if (0..2).all(|a| p.output_padding[a] < p.stride[a]) {
            assert_eq!(full.shape(), z.shape(), "{what}");
        }
        // ⟨conv_transpose2d(z, W), x⟩ = ⟨W, conv_transpose2d_backward_weight(z, x)⟩
        let dw = Tensor::conv_transpose2d_backward_weight_on(path, &z, &x, [w.dim(2), w.dim(3)], p);
        assert_close_scalar(dot(&zt, &x), dot(&w, &dw), 1e-12, &what);
        // and the weight gradient from the definition (when z is the whole conv2d output)
        if full.shape() == z.shape() {
            let want_dw = naive::conv2d_backward_weight(&z, &x, [w.dim(2), w.dim(3)], p.as_conv());
            assert_close(&dw, &want_dw, &what);
        }
    }
}

#[test]
fn strided_conv_with_output_padding_gives_adjoint_shapes() {
    // docs/math.md §2: A(z) = conv_transpose2d(z, W) and Aᵀ(x) = conv2d(x, W) with matching
    // shapes when s > 1, through output_padding.
    let mut rng = Rng::new(17);
    let p = Conv2dParams::new().stride(2).padding(1);
    let x = randn(&[2, 3, 8, 8], &mut rng);
    let w = randn(&[5, 3, 3, 3], &mut rng);
    let y = x.conv2d(&w, None, p);
    assert_eq!(y.shape(), &[2, 5, 4, 4]);
    let pt = ConvTranspose2dParams::new().stride(2).padding(1).output_padding(1);
    let z = randn(y.shape(), &mut rng);
    let az = z.conv_transpose2d(&w, None, pt);
    assert_eq!(az.shape(), x.shape());
    assert_close_scalar(dot(&az, &x), dot(&z, &y), 1e-12, "adjoint");
}

#[test]
fn zero_sized_batches_and_channels() {
    let p = Conv2dParams::new().padding(1);
    let x = Tensor::<f64>::zeros(&[0, 3, 5, 5]);
    let w = Tensor::<f64>::ones(&[2, 3, 3, 3]);
    assert_eq!(x.conv2d(&w, None, p).shape(), &[0, 2, 5, 5]);
    let dw = Tensor::conv2d_backward_weight(&Tensor::zeros(&[0, 2, 5, 5]), &x, [3, 3], p);
    assert_eq!(dw.to_vec(), vec![0.0; 54]);
    // No input channels: the output is the bias.
    let x = Tensor::<f64>::zeros(&[2, 0, 4, 4]);
    let w = Tensor::<f64>::zeros(&[3, 0, 3, 3]);
    let b = Tensor::from([1.0, 2.0, 3.0]);
    let y = x.conv2d(&w, Some(&b), p);
    assert_eq!(y.get(&[1, 2, 3, 3]), 3.0);
}

#[test]
fn hand_computed_stride_two_conv() {
    // x = 0..16 as 4×4, W = [[1, 0], [0, −1]], stride 2:  y[a, b] = x[2a, 2b] − x[2a+1, 2b+1] = −5
    let x = Tensor::<f64>::arange(16).reshape(&[1, 1, 4, 4]);
    let w = Tensor::from_vec(vec![1.0, 0.0, 0.0, -1.0], &[1, 1, 2, 2]);
    let y = x.conv2d(&w, Some(&Tensor::from([0.5])), Conv2dParams::new().stride(2));
    assert_eq!(y.to_vec(), vec![-4.5; 4]);
}

#[test]
fn f32_matches_f64() {
    let mut rng = Rng::new(18);
    let (x, w, b, p) = setup((5, 4, 9, 8, 6, 3, 3, [1, 1], [1, 1], [1, 1], 2), &mut rng);
    let y64 = x.conv2d(&w, Some(&b), p);
    let y32 = x.cast::<f32>().conv2d(&w.cast(), Some(&b.cast()), p).cast::<f64>();
    assert!(y32.allclose(&y64, 1e-4, 1e-4));
    let gy = randn(y64.shape(), &mut rng);
    let dw64 = Tensor::conv2d_backward_weight(&gy, &x, [3, 3], p);
    let dw32 = Tensor::conv2d_backward_weight(&gy.cast::<f32>(), &x.cast(), [3, 3], p).cast::<f64>();
    assert!(dw32.allclose(&dw64, 1e-4, 1e-3));
}

/// `got` against the f64 reference `want` within the rounding bound of an f32 sum of `n`
/// products, `|got − want| ≤ n·ε·Σ|terms|` (`scale` holds Σ|terms| per element).
#[track_caller]
fn assert_within_rounding(got: &Tensor<f32>, want: &Tensor<f64>, scale: &Tensor<f64>, n: usize, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let tol = n as f64 * f32::EPSILON as f64;
    for (i, ((a, b), s)) in got.cast::<f64>().to_vec().iter().zip(want.to_vec()).zip(scale.to_vec()).enumerate() {
        assert!((a - b).abs() <= tol * s + f64::MIN_POSITIVE, "{what}: element {i}: {a} vs {b} (scale {s})");
    }
}

/// The f32 instances of every path against the definition (the f64 tests above run the
/// same code at the other element type).
#[test]
fn f32_kernels_match_naive_within_rounding() {
    let mut rng = Rng::new(20);
    for case in cases() {
        let (x, w, b, p) = setup(case, &mut rng);
        let (x32, w32, b32) = (x.cast::<f32>(), w.cast::<f32>(), b.cast::<f32>());
        let (x, w, b) = (x32.cast::<f64>(), w32.cast::<f64>(), b32.cast::<f64>());
        let (xa, wa) = (x.abs(), w.abs());
        let (hw, khw) = ([x.dim(2), x.dim(3)], [w.dim(2), w.dim(3)]);
        let gy32 = randn(naive::conv2d(&x, &w, None, p).shape(), &mut rng).cast::<f32>();
        let gy = gy32.cast::<f64>();
        let taps = w.dim(1) * khw[0] * khw[1];
        let positions = gy.dim(0) * gy.dim(2) * gy.dim(3);
        let want_y = naive::conv2d(&x, &w, Some(&b), p);
        let scale_y = naive::conv2d(&xa, &wa, Some(&b.abs()), p);
        let want_dx = naive::conv2d_backward_input(&gy, &w, hw, p);
        let scale_dx = naive::conv2d_backward_input(&gy.abs(), &wa, hw, p);
        let want_dw = naive::conv2d_backward_weight(&gy, &x, khw, p);
        let scale_dw = naive::conv2d_backward_weight(&gy.abs(), &xa, khw, p);
        for path in Path::all() {
            let what = format!("{path:?} {case:?}");
            let y = x32.conv2d_on(path, &w32, Some(&b32), p);
            assert_within_rounding(&y, &want_y, &scale_y, taps + 1, &format!("forward {what}"));
            let dx = Tensor::conv2d_backward_input_on(path, &gy32, &w32, hw, p);
            let n_dx = gy.dim(1) / p.groups * khw[0] * khw[1];
            assert_within_rounding(&dx, &want_dx, &scale_dx, n_dx, &format!("input gradient {what}"));
            let dw = Tensor::conv2d_backward_weight_on(path, &gy32, &x32, khw, p);
            assert_within_rounding(&dw, &want_dw, &scale_dw, positions, &format!("weight gradient {what}"));
        }
    }
}

#[test]
fn weight_gradient_is_bit_identical_for_any_thread_count() {
    // Parallel chunks with 7 partial sums (batch 37, 3 images per GEMM); one chunk with
    // GEMMs split in row blocks (a dense layer); three single-image chunks in turn, cut
    // into row blocks; two chunks in turn with GEMMs split in column blocks (pointwise).
    let configs = [
        ([37, 6, 11, 10], [8, 3, 3, 3], Conv2dParams::new().padding(1).groups(2)),
        ([37, 40, 4, 4], [100, 40, 4, 4], Conv2dParams::new()),
        ([3, 16, 40, 40], [24, 16, 3, 3], Conv2dParams::new().padding(1)),
        ([2, 256, 64, 64], [32, 256, 1, 1], Conv2dParams::new()),
    ];
    let mut rng = Rng::new(19);
    let configs = configs.into_iter().chain([
        ([37, 1, 28, 28], [20, 1, 5, 5], Conv2dParams::new()), // LeNet's first layer
        ([5, 3, 21, 19], [17, 3, 3, 3], Conv2dParams::new().padding(1)), // row blocks
        // One run (ResNet-20's last stage): its channel blocks split between the threads.
        ([64, 64, 8, 8], [64, 64, 3, 3], Conv2dParams::new().padding(1)),
        ([6, 8, 8, 8], [26, 4, 3, 3], Conv2dParams::new().padding(1).groups(2)),
    ]);
    for ((xs, ws, p), path) in configs.flat_map(|c| Path::all().into_iter().map(move |path| (c, path))) {
        let x = Tensor::<f32>::randn(&xs, &mut rng);
        let w = Tensor::<f32>::randn(&ws, &mut rng);
        let gy = Tensor::<f32>::randn(x.conv2d(&w, None, p).shape(), &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                [
                    Tensor::conv2d_backward_weight_on(path, &gy, &x, [ws[2], ws[3]], p),
                    Tensor::conv2d_backward_input_on(path, &gy, &w, [xs[2], xs[3]], p),
                    x.conv2d_on(path, &w, None, p),
                ]
                .map(|t| t.to_vec().into_iter().map(f32::to_bits).collect::<Vec<u32>>())
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            let other = run(threads);
            for (what, (a, b)) in ["weight gradient", "input gradient", "forward"].iter().zip(one.iter().zip(&other)) {
                let diff = a.iter().zip(b).position(|(x, y)| x != y);
                assert!(
                    diff.is_none(),
                    "{path:?} {xs:?} * {ws:?}: {what} differs at {diff:?} between 1 and {threads} threads"
                );
            }
        }
    }
}

#[test]
fn output_sizes() {
    let p = Conv2dParams::new().stride2([2, 3]).padding2([2, 1]).dilation2([1, 2]);
    // H: (11 + 4 − 3 − 1)/2 + 1 = 6;  W: (9 + 2 − 4 − 1)/3 + 1 = 3
    assert_eq!(p.output_hw([11, 9], [4, 3]), Some([6, 3]));
    assert_eq!(Conv2dParams::new().output_hw([4, 4], [5, 1]), None);
    assert_eq!(Conv2dParams::new().padding(1).output_hw([4, 4], [5, 1]), Some([2, 6]));
    assert_eq!(Conv2dParams::new().stride(0).output_hw([4, 4], [1, 1]), None);
    assert_eq!(Conv2dParams::new().groups(0).output_hw([4, 4], [1, 1]), None);
    assert_eq!(Conv2dParams::new().output_hw([4, 4], [0, 1]), None);
    let t = ConvTranspose2dParams::new().stride2([2, 3]).padding2([1, 0]).output_padding2([1, 2]);
    // H: 3·2 − 2 + 2 + 1 + 1 = 8;  W: 3·3 − 0 + 1 + 2 + 1 = 13
    assert_eq!(t.output_hw([4, 4], [3, 2]), Some([8, 13]));
    assert_eq!(ConvTranspose2dParams::new().output_padding(1).output_hw([4, 4], [3, 3]), None);
    assert_eq!(ConvTranspose2dParams::new().dilation(2).output_padding(1).output_hw([4, 4], [3, 3]), Some([9, 9]));
    assert_eq!(ConvTranspose2dParams::new().padding(2).output_hw([1, 1], [3, 3]), None);
    assert_eq!(ConvTranspose2dParams::new().output_hw([0, 1], [1, 1]), None);
}

#[test]
#[should_panic(expected = "conv2d: input [2, 3, 7, 6] has 3 channels but weight [4, 2, 3, 3] with groups 1 expects 2")]
fn channel_mismatch_panics() {
    let _ = Tensor::<f64>::zeros(&[2, 3, 7, 6]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, Conv2dParams::new());
}

#[test]
#[should_panic(expected = "conv2d: groups 2 does not divide the 3 channels of input [1, 3, 5, 5]")]
fn groups_not_dividing_channels_panics() {
    let _ =
        Tensor::<f64>::zeros(&[1, 3, 5, 5]).conv2d(&Tensor::zeros(&[4, 1, 3, 3]), None, Conv2dParams::new().groups(2));
}

#[test]
#[should_panic(expected = "conv2d: groups 2 does not divide the 3 output channels of weight [3, 2, 3, 3]")]
fn groups_not_dividing_outputs_panics() {
    let _ =
        Tensor::<f64>::zeros(&[1, 4, 5, 5]).conv2d(&Tensor::zeros(&[3, 2, 3, 3]), None, Conv2dParams::new().groups(2));
}

#[test]
#[should_panic(
    expected = "conv2d: kernel [5, 5] with dilation [1, 1] does not fit input [1, 1, 4, 4] with padding [0, 0]"
)]
fn kernel_larger_than_input_panics() {
    let _ = Tensor::<f64>::zeros(&[1, 1, 4, 4]).conv2d(&Tensor::zeros(&[1, 1, 5, 5]), None, Conv2dParams::new());
}

#[test]
#[should_panic(expected = "conv2d: stride [0, 0], dilation [1, 1] and groups 1 must all be at least 1")]
fn zero_stride_panics() {
    let _ =
        Tensor::<f64>::zeros(&[1, 1, 4, 4]).conv2d(&Tensor::zeros(&[1, 1, 3, 3]), None, Conv2dParams::new().stride(0));
}

#[test]
#[should_panic(expected = "conv2d: input must have rank 4, got shape [3, 4, 4]")]
fn wrong_rank_panics() {
    let _ = Tensor::<f64>::zeros(&[3, 4, 4]).conv2d(&Tensor::zeros(&[1, 3, 3, 3]), None, Conv2dParams::new());
}

#[test]
#[should_panic(expected = "conv2d: bias [3] should be [2] (one value per output channel)")]
fn wrong_bias_panics() {
    let _ = Tensor::<f64>::zeros(&[1, 3, 4, 4]).conv2d(
        &Tensor::zeros(&[2, 3, 3, 3]),
        Some(&Tensor::zeros(&[3])),
        Conv2dParams::new(),
    );
}

#[test]
#[should_panic(expected = "conv2d_backward_input: grad_out [1, 2, 3, 3] should be [1, 2, 2, 2]")]
fn backward_input_shape_mismatch_panics() {
    let _ = Tensor::<f64>::conv2d_backward_input(
        &Tensor::zeros(&[1, 2, 3, 3]),
        &Tensor::zeros(&[2, 3, 3, 3]),
        [4, 4],
        Conv2dParams::new(),
    );
}

#[test]
#[should_panic(expected = "conv2d_backward_weight: grad_out [2, 2, 2, 2] should be [3, 2, 2, 2]")]
fn backward_weight_batch_mismatch_panics() {
    let _ = Tensor::<f64>::conv2d_backward_weight(
        &Tensor::zeros(&[2, 2, 2, 2]),
        &Tensor::zeros(&[3, 3, 4, 4]),
        [3, 3],
        Conv2dParams::new(),
    );
}

#[test]
#[should_panic(
    expected = "conv_transpose2d: output_padding [2, 2] must be smaller than stride [2, 2] or dilation [1, 1]"
)]
fn large_output_padding_panics() {
    let p = ConvTranspose2dParams::new().stride(2).output_padding(2);
    let _ = Tensor::<f64>::zeros(&[1, 2, 4, 4]).conv_transpose2d(&Tensor::zeros(&[2, 3, 3, 3]), None, p);
}

#[test]
#[should_panic(expected = "conv_transpose2d: input [1, 2, 4, 4] has 2 channels but weight [3, 3, 3, 3] expects 3")]
fn transposed_channel_mismatch_panics() {
    let p = ConvTranspose2dParams::new();
    let _ = Tensor::<f64>::zeros(&[1, 2, 4, 4]).conv_transpose2d(&Tensor::zeros(&[3, 3, 3, 3]), None, p);
}

#[test]
#[should_panic(expected = "col2im: cols [1, 9, 4] should be [1, 9, 9]")]
fn col2im_shape_mismatch_panics() {
    let _ = Tensor::<f64>::col2im(&Tensor::zeros(&[1, 9, 4]), [1, 1, 5, 5], [3, 3], Conv2dParams::new());
}

/// `t` with all but about one entry in `keep` set to zero (a deterministic pattern).
fn sparsify(t: &Tensor<f64>, keep: usize, rng: &mut Rng) -> Tensor<f64> {
    let v = t.to_vec().into_iter().map(|x| if rng.below(keep as u64) == 0 { x } else { 0.0 }).collect();
    Tensor::from_vec(v, t.shape())
}

#[test]
fn sparse_output_gradients_take_the_sparse_kernels_and_match_naive() {
    // Every convolution case, and DCEA's geometry scaled down (stride 7, 11×11), with an
    // output gradient of about 1 nonzero in 100: `Path::Auto` takes the sparse kernels
    // (checked by `sparse::worthwhile`) and agrees with the naive reference.
    let mut rng = Rng::new(21);
    let mut cases = cases();
    cases.push((3, 1, 40, 41, 6, 11, 11, [7, 7], [0, 0], [1, 1], 1));
    cases.push((2, 2, 30, 30, 4, 5, 5, [3, 2], [2, 1], [2, 1], 2));
    for case in cases {
        let (x, w, _, p) = setup(case, &mut rng);
        let (hw, khw) = ([x.dim(2), x.dim(3)], [w.dim(2), w.dim(3)]);
        let gy = sparsify(&randn(naive::conv2d(&x, &w, None, p).shape(), &mut rng), 100, &mut rng);
        let what = format!("{case:?}");
        let g = slice_of(&gy);
        assert_eq!(sparse::worthwhile(g, slice_of(&w)), g.len() >= sparse::MAX_DENSITY_INV, "{what}");
        let want_dx = naive::conv2d_backward_input(&gy, &w, hw, p);
        let want_dw = naive::conv2d_backward_weight(&gy, &x, khw, p);
        assert_close(&Tensor::conv2d_backward_input(&gy, &w, hw, p), &want_dx, &what);
        assert_close(&Tensor::conv2d_backward_weight(&gy, &x, khw, p), &want_dw, &what);
        assert_close(&Tensor::conv2d_backward_input_on(Path::Sparse, &gy, &w, hw, p), &want_dx, &what);
        assert_close(&Tensor::conv2d_backward_weight_on(Path::Sparse, &gy, &x, khw, p), &want_dw, &what);
    }
    // conv_transpose2d of a sparse input is the sparse input gradient; its weight
    // gradient has the sparse input in the output-gradient role.
    for case in transposed_cases() {
        let (z, w, b, p) = transposed_setup(case, &mut rng);
        let z = sparsify(&z, 20, &mut rng);
        let what = format!("{case:?}");
        let want = naive::conv_transpose2d(&z, &w, Some(&b), p);
        assert_close(&z.conv_transpose2d(&w, Some(&b), p), &want, &what);
        assert_close(&z.conv_transpose2d_on(Path::Sparse, &w, Some(&b), p), &want, &what);
        let gy = randn(want.shape(), &mut rng);
        let khw = [w.dim(2), w.dim(3)];
        let want_dw = Tensor::conv_transpose2d_backward_weight_on(Path::Gemm, &z, &gy, khw, p);
        assert_close(&Tensor::conv_transpose2d_backward_weight(&z, &gy, khw, p), &want_dw, &what);
    }
}

#[test]
fn sparse_path_is_chosen_by_density_and_finiteness() {
    // A short gy (counted serially), a long one (its tail counted on rayon) and one long
    // enough that its serial head is 2/32 of it, with the extra nonzero in the head and in the
    // tail; a NaN far into a long other operand.
    let long = 40 * sparse::HEAD + 3 * crate::PAR_CHUNK;
    for n in [64 * sparse::MAX_DENSITY_INV, sparse::HEAD + 3 * crate::PAR_CHUNK + 64, long] {
        let mut gy = vec![0.0f64; n];
        assert!(sparse::worthwhile(&gy, &[1.0, 2.0]), "all zeros");
        for v in gy.iter_mut().step_by(sparse::MAX_DENSITY_INV) {
            *v = 1.5;
        }
        assert!(sparse::worthwhile(&gy, &[1.0]), "exactly one in MAX_DENSITY_INV");
        for at in [1, n - 2] {
            gy[at] = -2.0;
            assert!(!sparse::worthwhile(&gy, &[1.0]), "one more at {at} of {n}");
            gy[at] = 0.0;
        }
        assert!(!sparse::worthwhile(&gy, &[1.0, f64::NAN]), "NaN in the other operand");
        assert!(!sparse::worthwhile(&gy, &[f64::INFINITY]), "∞ in the other operand");
        let mut other = vec![1.0; n];
        other[n - 3] = f64::NAN;
        assert!(!sparse::worthwhile(&gy, &other), "NaN at the end of a long other operand");
        assert!(!sparse::worthwhile(&gy[..sparse::MAX_DENSITY_INV - 1], &[1.0]), "too short to count");
        let mut dense = vec![1.0f64; n];
        dense[n - 1] = 0.0;
        assert!(!sparse::worthwhile(&dense, &[1.0]));
    }
}

#[test]
fn sparse_gradient_with_a_nan_weight_propagates_it_like_the_dense_product() {
    // 0·NaN = NaN in the dense product; skipping the zeros of gy would hide it, so a
    // non-finite weight or input sends Path::Auto to the dense kernels (GEMM at stride 2).
    let mut rng = Rng::new(22);
    let (x, w, _, p) = setup((2, 3, 9, 9, 4, 3, 3, [2, 2], [1, 1], [1, 1], 1), &mut rng);
    let gy = sparsify(&randn(naive::conv2d(&x, &w, None, p).shape(), &mut rng), 200, &mut rng);
    let mut wv = w.to_vec();
    wv[5] = f64::NAN;
    let wn = Tensor::from_vec(wv, w.shape());
    let dx = Tensor::conv2d_backward_input(&gy, &wn, [9, 9], p).to_vec();
    let want = Tensor::conv2d_backward_input_on(Path::Gemm, &gy, &wn, [9, 9], p).to_vec();
    assert!(want.iter().any(|v| v.is_nan()));
    assert!(dx.iter().zip(&want).all(|(a, b)| a.is_nan() == b.is_nan()), "NaN pattern differs from the GEMM path");
    let mut xv = x.to_vec();
    xv[7] = f64::INFINITY;
    let xn = Tensor::from_vec(xv, x.shape());
    let dw = Tensor::conv2d_backward_weight(&gy, &xn, [3, 3], p).to_vec();
    let want = Tensor::conv2d_backward_weight_on(Path::Gemm, &gy, &xn, [3, 3], p).to_vec();
    assert!(dw
        .iter()
        .zip(&want)
        .all(|(a, b)| a.is_nan() == b.is_nan() && (a.is_nan() || a == b || (a - b).abs() < 1e-9)));
}

/// `a` and `b` agree as the module's "Non-finite values" requires: NaN exactly where `b`
/// has NaN, the same ±∞, and finite values within rounding (the paths sum in other orders).
#[track_caller]
fn assert_same_non_finite(a: &Tensor<f64>, b: &Tensor<f64>, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (i, (x, y)) in a.to_vec().iter().zip(b.to_vec()).enumerate() {
        let same = if y.is_nan() || x.is_nan() {
            x.is_nan() && y.is_nan()
        } else if y.is_infinite() || x.is_infinite() {
            x.to_bits() == y.to_bits()
        } else {
            (x - y).abs() <= 1e-12 * y.abs().max(1.0)
        };
        assert!(same, "{what}: element {i}: {x} vs {y}");
    }
}

#[test]
fn every_path_propagates_nan_and_inf_like_gemm() {
    // A NaN, a +∞ and a −∞, put in the weight or in the input at a corner tap (which meets
    // the padding) and at an inner one: forward, input gradient and weight gradient on
    // every path (GEMM, sparse, direct for each instruction set) have the NaN/∞ pattern of
    // im2col + GEMM, with a dense and a sparse output gradient. The input gradient also
    // matches the definition (the naive loops, which skip the padding): a non-finite
    // weight reaches only the positions its tap touches.
    let mut rng = Rng::new(26);
    let geometries: [Case; 6] = [
        (2, 3, 7, 6, 4, 3, 3, [1, 1], [1, 1], [1, 1], 1), // stride 1, padded: direct kernels
        (2, 3, 5, 8, 4, 3, 3, [1, 1], [1, 1], [1, 1], 1), // 8 columns: the direct row layouts
        (2, 4, 9, 8, 6, 2, 3, [1, 1], [2, 1], [3, 2], 2), // dilated, groups, direct
        (2, 3, 9, 9, 4, 3, 3, [2, 2], [1, 1], [1, 1], 1), // stride 2
        (2, 3, 5, 6, 4, 2, 3, [1, 1], [3, 2], [1, 1], 1), // padding beyond the kernel
        (3, 5, 4, 6, 7, 1, 1, [1, 1], [0, 0], [1, 1], 1), // pointwise
    ];
    for case in geometries {
        let (x, w, b, p) = setup(case, &mut rng);
        let (hw, khw) = ([x.dim(2), x.dim(3)], [w.dim(2), w.dim(3)]);
        let y_shape = naive::conv2d(&x, &w, None, p).shape().to_vec();
        let dense = randn(&y_shape, &mut rng);
        let sparse_gy = sparsify(&dense, 50, &mut rng);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for (in_weight, at) in [(true, 0), (true, w.numel() - 1), (false, 0), (false, x.numel() / 2 + 1)] {
                let poison = |t: &Tensor<f64>| {
                    let mut v = t.to_vec();
                    v[at] = bad;
                    Tensor::from_vec(v, t.shape())
                };
                let (xb, wb) = if in_weight { (x.clone(), poison(&w)) } else { (poison(&x), w.clone()) };
                let want_y = xb.conv2d_on(Path::Gemm, &wb, Some(&b), p);
                for gy in [&dense, &sparse_gy] {
                    let want_dx = Tensor::conv2d_backward_input_on(Path::Gemm, gy, &wb, hw, p);
                    let want_dw = Tensor::conv2d_backward_weight_on(Path::Gemm, gy, &xb, khw, p);
                    let naive_dx = naive::conv2d_backward_input(gy, &wb, hw, p).to_vec();
                    let nan_pattern = |v: &[f64]| v.iter().map(|e| e.is_nan()).collect::<Vec<_>>();
                    let what = format!("{case:?} {bad} in the {}", if in_weight { "weight" } else { "input" });
                    assert_eq!(nan_pattern(&want_dx.to_vec()), nan_pattern(&naive_dx), "{what}: GEMM vs naive");
                    for path in Path::all() {
                        let what = format!("{what}, {path:?}");
                        assert_same_non_finite(&xb.conv2d_on(path, &wb, Some(&b), p), &want_y, &what);
                        let dx = Tensor::conv2d_backward_input_on(path, gy, &wb, hw, p);
                        assert_same_non_finite(&dx, &want_dx, &format!("{what}: input gradient"));
                        let dw = Tensor::conv2d_backward_weight_on(path, gy, &xb, khw, p);
                        assert_same_non_finite(&dw, &want_dw, &format!("{what}: weight gradient"));
                    }
                }
            }
        }
    }
}

/// `t ⊙ [mask ≠ 0]` with exact zeros outside the mask.
fn masked(t: &Tensor<f64>, mask: &Tensor<f64>) -> Tensor<f64> {
    let v = t.to_vec().into_iter().zip(mask.to_vec()).map(|(v, m)| if m != 0.0 { v } else { 0.0 }).collect();
    Tensor::from_vec(v, t.shape())
}

#[test]
fn masked_convolutions_match_the_dense_ones_on_the_mask() {
    // Every convolution and transposed case, and DCEA's geometry scaled down, with masks of
    // about 1 nonzero in 5, contiguous and in a strided view: conv2d_where and
    // conv_transpose2d_backward_input_where equal the naive dense result on the mask and
    // are exactly zero elsewhere.
    let mut rng = Rng::new(24);
    let mut cases = cases();
    cases.push((3, 1, 40, 41, 6, 11, 11, [7, 7], [0, 0], [1, 1], 1));
    for case in cases {
        let (x, w, _, p) = setup(case, &mut rng);
        let want = naive::conv2d(&x, &w, None, p);
        let mask = sparsify(&randn(want.shape(), &mut rng), 5, &mut rng);
        let what = format!("{case:?}");
        let got = x.conv2d_where(&w, p, &mask);
        assert_close(&got, &masked(&want, &mask), &what);
        assert!(got.to_vec().iter().zip(mask.to_vec()).all(|(&g, m)| m != 0.0 || g == 0.0), "{what}");
        assert_close(&strided_copy(&x).conv2d_where(&w, p, &strided_copy(&mask)), &masked(&want, &mask), &what);
    }
    for case in transposed_cases() {
        let (z, w, _, p) = transposed_setup(case, &mut rng);
        let gy = randn(naive::conv_transpose2d(&z, &w, None, p).shape(), &mut rng);
        let want = Tensor::conv_transpose2d_backward_input_on(Path::Gemm, &gy, &w, [z.dim(2), z.dim(3)], p);
        let mask = sparsify(&randn(z.shape(), &mut rng), 5, &mut rng);
        let what = format!("{case:?}");
        let got = Tensor::conv_transpose2d_backward_input_where(&gy, &w, &mask, p);
        assert_close(&got, &masked(&want, &mask), &what);
        let got = Tensor::conv_transpose2d_backward_input_where(&strided_copy(&gy), &w, &strided_copy(&mask), p);
        assert_close(&got, &masked(&want, &mask), &what);
    }
}

#[test]
fn masked_convolution_keeps_a_nan_outside_the_mask_out() {
    let mut rng = Rng::new(25);
    let (x, w, _, p) = setup((1, 2, 9, 9, 3, 3, 3, [2, 2], [1, 1], [1, 1], 1), &mut rng);
    let mut xv = x.to_vec();
    xv[0] = f64::NAN; // read only by the output at (0, 0) of every channel
    let xn = Tensor::from_vec(xv, x.shape());
    let mut mask = Tensor::<f64>::ones(naive::conv2d(&x, &w, None, p).shape()).to_vec();
    let l = mask.len() / 3;
    (0..3).for_each(|o| mask[o * l] = 0.0);
    let mask = Tensor::from_vec(mask, naive::conv2d(&x, &w, None, p).shape());
    let got = xn.conv2d_where(&w, p, &mask).to_vec();
    assert!(got.iter().all(|v| v.is_finite()), "a NaN outside the mask leaked in");
    assert!(xn.conv2d(&w, None, p).to_vec()[0].is_nan());
}

#[test]
#[should_panic(expected = "conv2d_where: mask [1, 3, 4, 4] should be [1, 3, 5, 5]")]
fn masked_convolution_with_a_wrong_mask_panics() {
    let mut rng = Rng::new(26);
    let (x, w) = (randn(&[1, 2, 7, 7], &mut rng), randn(&[3, 2, 3, 3], &mut rng));
    x.conv2d_where(&w, Conv2dParams::new(), &randn(&[1, 3, 4, 4], &mut rng));
}

/// Where the sparse kernels break even with the dense ones on DCEA's geometry (f32, one
/// thread): `cargo test --release -p sparsegrad-engine sparse_crossover -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check"]
fn sparse_crossover() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut rng = Rng::new(23);
    let p = Conv2dParams::new().stride(7);
    let x = Tensor::<f32>::randn(&[49, 1, 270, 270], &mut rng);
    let w = Tensor::<f32>::randn(&[169, 1, 11, 11], &mut rng);
    let full = Tensor::<f32>::randn(x.conv2d(&w, None, p).shape(), &mut rng);
    let time = |f: &dyn Fn()| {
        let t = std::time::Instant::now();
        for _ in 0..3 {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / 3.0
    };
    pool.install(|| {
        println!("nonzero %  dx dense ms  dx sparse ms  dW dense ms  dW sparse ms");
        for keep in [1000, 100, 50, 32, 20, 16, 10, 5] {
            let v = full.to_vec().into_iter().map(|x| if rng.below(keep) == 0 { x } else { 0.0 }).collect();
            let gy = Tensor::from_vec(v, full.shape());
            let (hw, khw) = ([270, 270], [11, 11]);
            let dxd = time(&|| drop(Tensor::conv2d_backward_input_on(Path::Gemm, &gy, &w, hw, p)));
            let dxs = time(&|| drop(Tensor::conv2d_backward_input_on(Path::Sparse, &gy, &w, hw, p)));
            let dwd = time(&|| drop(Tensor::conv2d_backward_weight_on(Path::Gemm, &gy, &x, khw, p)));
            let dws = time(&|| drop(Tensor::conv2d_backward_weight_on(Path::Sparse, &gy, &x, khw, p)));
            println!("{:9.2}  {dxd:11.1}  {dxs:12.1}  {dwd:11.1}  {dws:12.1}", 100.0 / keep as f64);
        }
    });
}

//! The whole model on the tape: the shifts of a strided DCEA ([`shift_batch`], [`shift_mean`]),
//! the fused forward ([`dcea_forward`], [`dcea_forward_traced`]) and its composite reference
//! ([`dcea_forward_composite`]).

use autograd::{Retain, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Element};

use super::config::{DceaConfig, Threshold};
use super::params::DceaParams;
use super::rules::{dcea_decode, dcea_iteration, dcea_threshold, StepSpec};

/// What the encoder did, beside its output. The margins are the distances of the kink
/// arguments from their kinks, so a gradient check can tell whether central differences are
/// valid (every margin well above the perturbation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DceaStats {
    /// Per iteration, the fraction of code entries that are nonzero after the threshold.
    pub active: Vec<f64>,
    /// Per iteration, `min |arg|` over the threshold's arguments: `v − b` (one-sided) or
    /// `|v| − b` (two-sided), `v = x + α·Weᵀ r`.
    pub threshold_margin: Vec<f64>,
    /// Per iteration, `min |arg|` over the ELU's arguments `y − f⁻¹(H x_{t−1})` where
    /// `H x_{t−1} ≠ 0` (empty without an ELU; ∞ at `t = 0`, where `H x₀ = 0`). Where
    /// `H x_{t−1} = 0` exactly, every code reaching the pixel is 0 and stays 0 under a small
    /// change of the parameters, so the argument `y − f⁻¹(0)` moves with `y` only: see
    /// [`DceaStats::elu_margin_at_zero`].
    pub elu_margin: Vec<f64>,
    /// `min |y − f⁻¹(0)|` over the (shifted) input: the ELU arguments where `H x = 0` (∞
    /// without an ELU). Integer counts with `f⁻¹(0) = 1` (Poisson) make it 0.
    pub elu_margin_at_zero: f64,
}

impl DceaStats {
    /// The smallest margin over every kink, for a check of the gradients with respect to
    /// the parameters and `y`.
    pub fn kink_margin(&self) -> f64 {
        self.parameter_kink_margin().min(self.elu_margin_at_zero)
    }

    /// The smallest margin over the kinks whose arguments move with the parameters (`H`,
    /// `We`, `Wd`, `b`) when `y` is fixed.
    pub fn parameter_kink_margin(&self) -> f64 {
        self.threshold_margin.iter().chain(&self.elu_margin).fold(f64::INFINITY, |m, &v| m.min(v))
    }
}

/// The output of [`dcea_forward`].
#[derive(Clone, Debug)]
pub struct DceaOutput<'t, T: Element> {
    /// `η̂` `[N, C, H, W]` (the average over the shifts when they are used).
    pub eta: Var<'t, T>,
    /// The code `x_T` `[N', K, h', w']` (`N' = s²·N` with shifts, shift-major).
    pub code: Var<'t, T>,
    /// The diagnostics, from [`dcea_forward_traced`] only.
    pub stats: Option<DceaStats>,
}

/// A scope returning the output keeps `eta` and `code` ([`Tape::scope`](autograd::Tape::scope)).
impl<T: Element> Retain for DceaOutput<'_, T> {
    fn retained(&self, ids: &mut Vec<autograd::NodeId>) {
        self.eta.retained(ids);
        self.code.retained(ids);
    }
}

/// Paddings of the shifts: `(top, bottom)` for the rows and `(left, right)` for the columns of
/// shift `(0, 0)`; shift `(r, c)` uses `(top − r, bottom + r)` and `(left − c, right + c)`.
fn shift_pads(size: usize, k: usize, s: usize) -> (usize, usize) {
    let rem = (size + s - k) % s;
    let after = if rem == 0 { 0 } else { s - rem };
    (s, after + s)
}

/// Reflect index (PyTorch `mode="reflect"`, the edge not repeated) of padded position `p` for
/// an axis of length `n` padded by `before`.
fn reflect(p: usize, before: usize, n: usize) -> usize {
    let i = p as isize - before as isize;
    let last = n as isize - 1;
    let j = if i < 0 {
        -i
    } else if i > last {
        2 * last - i
    } else {
        i
    };
    j as usize
}

/// The `s²` reflect-padded shifts of `y` `[N, C, H, W]` as one batch `[s²·N, C, Hp, Wp]`
/// (shift-major), on the tape: one `index_select` per axis builds the widest padding, each
/// shift is a window of it, and the windows are concatenated.
///
/// **Panics** if a reflect padding is not smaller than the image (as PyTorch).
#[track_caller]
pub fn shift_batch<'t, T: Element>(y: &Var<'t, T>, kernel: [usize; 2], s: usize) -> Var<'t, T> {
    let sh = y.shape();
    let (h, w) = (sh[2], sh[3]);
    let (top, bottom) = shift_pads(h, kernel[0], s);
    let (left, right) = shift_pads(w, kernel[1], s);
    assert!(
        bottom + s - 1 < h && right + s - 1 < w,
        "dcea shifts: reflect padding up to {} rows and {} columns needs an image larger than that, got {h}×{w}",
        bottom + s - 1,
        right + s - 1
    );
    let (hp, wp) = (top + h + bottom, left + w + right);
    let rows: Vec<usize> = (0..hp + s - 1).map(|p| reflect(p, top, h)).collect();
    let cols: Vec<usize> = (0..wp + s - 1).map(|p| reflect(p, left, w)).collect();
    // The padded image and its windows are freed once concatenated (where no rule needs them).
    y.tape().scope(|| {
        let wide = y.index_select(2, &rows).index_select(3, &cols);
        let windows: Vec<Var<'t, T>> = (0..s * s).map(|k| wide.narrow(2, k / s, hp).narrow(3, k % s, wp)).collect();
        Var::concat(&windows, 0)
    })
}

/// The average over the `s²` shifts of the decoder outputs `eta` `[s²·N, C, Hp, Wp]`, each
/// cropped to the pixels of the `[H, W]` image (the inverse placement of [`shift_batch`]):
/// `[N, C, H, W]`.
#[track_caller]
pub fn shift_mean<'t, T: Element>(eta: &Var<'t, T>, image: [usize; 2], kernel: [usize; 2], s: usize) -> Var<'t, T> {
    let (top, _) = shift_pads(image[0], kernel[0], s);
    let (left, _) = shift_pads(image[1], kernel[1], s);
    let n = eta.dim(0) / (s * s);
    // The crops and partial sums are freed at the end (where no rule needs them).
    eta.tape().scope(|| {
        let mut sum: Option<Var<'t, T>> = None;
        for k in 0..s * s {
            let (r, c) = (k / s, k % s);
            let crop = eta.narrow(0, k * n, n).narrow(2, top - r, image[0]).narrow(3, left - c, image[1]);
            sum = Some(match sum {
                None => crop,
                Some(acc) => acc.add(&crop),
            });
        }
        sum.expect("s ≥ 1").div_scalar((s * s) as f64)
    })
}

/// Checks `y`'s shape against the configuration and returns the encoder's input (the shift
/// batch with shifts), the conv2d and the conv_transpose2d parameters.
#[track_caller]
fn prepare<'t, T: Element>(y: &Var<'t, T>, cfg: &DceaConfig) -> (Var<'t, T>, Conv2dParams, ConvTranspose2dParams) {
    cfg.validate();
    let ys = y.shape();
    assert!(
        ys.len() == 4 && ys[1] == cfg.channels && ys[2] >= cfg.kernel[0] && ys[3] >= cfg.kernel[1],
        "dcea_forward: y must be [N, {}, H ≥ {}, W ≥ {}], got {ys:?}",
        cfg.channels,
        cfg.kernel[0],
        cfg.kernel[1]
    );
    let s = cfg.stride;
    let input = if cfg.uses_shifts() { shift_batch(y, cfg.kernel, s) } else { *y };
    let is = input.shape();
    // conv_transpose2d of the codes must give back the input's size: (h' − 1)·s + k + op.
    let op = [(is[2] - cfg.kernel[0]) % s, (is[3] - cfg.kernel[1]) % s];
    (input, Conv2dParams::new().stride(s), ConvTranspose2dParams::new().stride(s).output_padding2(op))
}

/// With shifts, the average of the decoder outputs `η` over them (the crop of each to the image).
fn unshift<'t, T: Element>(eta: Var<'t, T>, y: &Var<'t, T>, cfg: &DceaConfig) -> Var<'t, T> {
    if cfg.uses_shifts() {
        shift_mean(&eta, [y.dim(2), y.dim(3)], cfg.kernel, cfg.stride)
    } else {
        eta
    }
}

/// The unfolded encoder, the decoder and the shift average (module docs) on the tape, for the
/// observations `y` `[N, C, H, W]`: one [`dcea_iteration`] per step on the pre-threshold codes
/// `v_t` (`x_t = P_b(v_t)`), then [`dcea_decode`] (`Wd P_b(v_T)`) and [`dcea_threshold`]
/// (the code `x_T` of the output). `stats` is `None`; see [`dcea_forward_traced`].
///
/// Each iterate is released ([`Tape::release`](autograd::Tape::release)) once the next one is computed, and the shift
/// batch once decoded, wherever no recorded rule needs them: on an inference tape
/// ([`Tape::inference`](autograd::Tape::inference)) or under [`Tape::no_grad`](autograd::Tape::no_grad) the forward holds two iterates at a time,
/// not `T` ([`denoise`](super::denoise) is the tensor-level entry point).
///
/// **Panics** if `y`'s channels differ from the configuration's, the image is smaller than a
/// filter, or (with shifts) than the reflect padding.
#[track_caller]
pub fn dcea_forward<'t, T: Element>(p: &DceaParams<'t, T>, y: &Var<'t, T>, cfg: &DceaConfig) -> DceaOutput<'t, T> {
    forward(p, y, cfg, false)
}

/// [`dcea_forward`] with the [`DceaStats`] of every step (margins and active fractions; a
/// few extra passes over the codes).
#[track_caller]
pub fn dcea_forward_traced<'t, T: Element>(
    p: &DceaParams<'t, T>,
    y: &Var<'t, T>,
    cfg: &DceaConfig,
) -> DceaOutput<'t, T> {
    forward(p, y, cfg, true)
}

#[track_caller]
fn forward<'t, T: Element>(p: &DceaParams<'t, T>, y: &Var<'t, T>, cfg: &DceaConfig, trace: bool) -> DceaOutput<'t, T> {
    let (input, conv, convt) = prepare(y, cfg);
    let spec = StepSpec::of(cfg, conv, convt);
    let mut stats = DceaStats { elu_margin_at_zero: f64::INFINITY, ..DceaStats::default() };
    let tape = y.tape();
    let mut v: Option<Var<'t, T>> = None; // x₀ = 0
    for _ in 0..cfg.iters {
        let (next, st) = dcea_iteration(v.as_ref(), &input, &p.h, &p.we, &p.b, spec, trace);
        // Freed where no rule needs it (inference, no_grad): the next step replaces it.
        if let Some(prev) = v {
            tape.release(&prev);
        }
        if trace {
            if cfg.elu_alpha.is_some() {
                if v.is_none() {
                    stats.elu_margin_at_zero = st.elu_margin_all;
                }
                stats.elu_margin.push(st.elu_margin);
            }
            stats.threshold_margin.push(st.threshold_margin);
            stats.active.push(st.active as f64 / next.value().numel() as f64);
        }
        v = Some(next);
    }
    let v = v.expect("iters ≥ 1");
    if cfg.uses_shifts() {
        tape.release(&input); // the shift batch (`y` itself otherwise)
    }
    let decoded = dcea_decode(&v, &p.wd, &p.b, cfg.threshold, convt);
    let code = dcea_threshold(&v, &p.b, cfg.threshold);
    tape.release(&v);
    let eta = unshift(decoded, y, cfg);
    if cfg.uses_shifts() {
        tape.release(&decoded);
    }
    DceaOutput { eta, code, stats: trace.then_some(stats) }
}

/// The same map as [`dcea_forward`] built from elementary ops only (conv2d, conv_transpose2d,
/// exp/sigmoid, sub, elu, mul_scalar, add, relu, abs, sign, mul): the reference the fused
/// [`dcea_iteration`], [`dcea_decode`] and [`dcea_threshold`] rules are checked against. It
/// records 5–9 nodes per step instead of 1 (about twice the memory).
#[track_caller]
pub fn dcea_forward_composite<'t, T: Element>(
    p: &DceaParams<'t, T>,
    y: &Var<'t, T>,
    cfg: &DceaConfig,
) -> DceaOutput<'t, T> {
    let (input, conv, convt) = prepare(y, cfg);
    let tape = y.tape();
    let b = p.b.reshape(&[1, cfg.filters, 1, 1]);
    let mut x: Option<Var<'t, T>> = None;
    for _ in 0..cfg.iters {
        // One step in a scope (its intermediates freed where no rule needs them), the previous
        // code released once replaced.
        let next = tape.scope(|| {
            let resid = match &x {
                None if cfg.family.mean_at_zero() == 0.0 => input,
                None => input.sub_scalar(cfg.family.mean_at_zero()),
                Some(x) => input.sub(&cfg.family.mean(&x.conv_transpose2d(&p.h, None, convt))),
            };
            let resid = match cfg.elu_alpha {
                Some(a) => resid.elu(a),
                None => resid,
            };
            let mut c = resid.conv2d(&p.we, None, conv);
            if cfg.step != 1.0 {
                c = c.mul_scalar(cfg.step);
            }
            let v = match &x {
                None => c,
                Some(x) => x.add(&c),
            };
            match cfg.threshold {
                Threshold::OneSided => v.sub(&b).relu(),
                Threshold::TwoSided => v.abs().sub(&b).relu().mul(&v.sign()),
            }
        });
        if let Some(prev) = x {
            tape.release(&prev);
        }
        x = Some(next);
    }
    let code = x.expect("iters ≥ 1");
    if cfg.uses_shifts() {
        tape.release(&input);
    }
    let eta = tape.scope(|| unshift(code.conv_transpose2d(&p.wd, None, convt), y, cfg));
    DceaOutput { eta, code, stats: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_pads_match_the_authors_calc_pad_sizes() {
        // utils.calc_pad_sizes for a 256-wide image, 11-wide filters, stride 7:
        // left = 7; (256 + 7 − 11) % 7 = 0 → right = 0 + 7 = 7 → 270 = 11 + 7·37.
        assert_eq!(shift_pads(256, 11, 7), (7, 7));
        // 128 (the training crops): (128 + 7 − 11) % 7 = 5 → right = 2 + 7 = 9 → 144 = 11 + 7·19.
        assert_eq!(shift_pads(128, 11, 7), (7, 9));
        // 512: (512 + 7 − 11) % 7 = 4 → right = 3 + 7 = 10 → 529 = 11 + 7·74.
        assert_eq!(shift_pads(512, 11, 7), (7, 10));
    }

    #[test]
    fn reflect_does_not_repeat_the_edge() {
        // [a b c d] reflect-padded by 2: c b | a b c d | c b
        let idx: Vec<usize> = (0..8).map(|p| reflect(p, 2, 4)).collect();
        assert_eq!(idx, vec![2, 1, 0, 1, 2, 3, 2, 1]);
    }
}

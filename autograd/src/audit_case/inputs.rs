//! Building the inputs of audit cases: value domains that keep a margin from every kink, the
//! layouts an input is given in (contiguous, transposed, permuted, sliced, broadcast), and
//! seeded generators so every run audits the same shapes and values.

use engine::{Rng, Tensor};

use crate::check::CheckOptions;
use crate::tape::Var;

/// Smallest distance kept between an input value and a kink of the audited op. Central
/// differences with `eps = 1e-6` only need `eps`; the margin leaves room for every value to
/// stay on one side of the kink with no care about rounding.
pub const MARGIN: f64 = 0.05;

/// The values an input may take.
#[derive(Clone, Copy, Debug)]
pub enum Dom {
    /// Standard normal.
    Any,
    /// Uniform in `[lo, hi)`.
    Range(f64, f64),
    /// Uniform in `[−2, 2)`, at least [`MARGIN`] from each listed kink.
    Away(&'static [f64]),
    /// Pairwise distinct: a shuffled grid of spacing 0.05 with jitter below 0.0125, so any two
    /// elements are at least 0.025 apart and every max/min is unique within `±eps`.
    Distinct,
    /// `k·0.1 + offset` for random integers `k` in `−15..15`. Two tensors with offsets 0 and
    /// 0.05 are everywhere at least 0.05 apart (for `maximum`/`minimum`).
    Grid(f64),
}

pub fn values(dom: Dom, n: usize, rng: &mut Rng) -> Vec<f64> {
    match dom {
        Dom::Any => (0..n).map(|_| rng.normal()).collect(),
        Dom::Range(lo, hi) => (0..n).map(|_| rng.uniform_in(lo, hi)).collect(),
        Dom::Away(kinks) => (0..n)
            .map(|_| loop {
                let v = rng.uniform_in(-2.0, 2.0);
                if kinks.iter().all(|k| (v - k).abs() >= MARGIN) {
                    break v;
                }
            })
            .collect(),
        Dom::Distinct => {
            let mut ranks: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut ranks);
            let mid = n as f64 / 2.0;
            ranks.iter().map(|&r| (r as f64 - mid) * 0.05 + rng.uniform_in(-0.0125, 0.0125)).collect()
        }
        Dom::Grid(offset) => (0..n).map(|_| (rng.below(30) as f64 - 15.0) * 0.1 + offset).collect(),
    }
}

/// A contiguous tensor of `shape` with values from `dom`.
pub fn tensor(dom: Dom, shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    let n = shape.iter().product();
    Tensor::from_vec(values(dom, n, rng), shape)
}

/// The layout an input is given in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Contiguous,
    /// The last two axes swapped (a transposed matrix).
    Transposed,
    /// Axis `k` of the input is axis `k + 1 (mod rank)` of its storage.
    Permuted,
    /// Every second element of the last axis, starting at 1, and an offset on axis 0.
    Sliced,
    /// A leaf whose first axis longer than 1 has length 1, broadcast (stride 0) to the
    /// logical shape inside the audited function.
    Broadcast,
}

/// One input of a case: its description, the tensor handed to the checker and, for a
/// broadcast input, the shape the audited function broadcasts it to.
pub struct Input {
    /// What the input is, for the audit table (`"sliced view [3, 4] (step 2, offset)"`).
    pub desc: String,
    /// The tensor handed to the checker (for a broadcast input, the small leaf).
    pub value: Tensor<f64>,
    /// The shape a broadcast input is broadcast to inside the audited function.
    pub target: Option<Vec<usize>>,
}

/// `v`, broadcast to `target` when there is one.
pub fn bcast<'t>(v: &Var<'t, f64>, target: &Option<Vec<usize>>) -> Var<'t, f64> {
    match target {
        Some(t) => v.broadcast_to(t),
        None => *v,
    }
}

/// An input of logical `shape` in the layout `view`, with values from `dom`; `params`, when
/// not empty, is appended to the description.
pub fn input(view: View, shape: &[usize], dom: Dom, rng: &mut Rng, params: &str) -> Input {
    let sep = if params.is_empty() { "" } else { "; " };
    let desc = format!("{}{sep}{params}", describe(view, shape));
    if view == View::Broadcast {
        let axis = shape.iter().position(|&d| d > 1).unwrap_or(0);
        let mut small = shape.to_vec();
        small[axis] = 1;
        Input { desc, value: tensor(dom, &small, rng), target: Some(shape.to_vec()) }
    } else {
        Input { desc, value: make(view, shape, dom, rng), target: None }
    }
}

/// An input of logical `shape` in the layout `view`, with values from `dom`.
pub fn make(view: View, shape: &[usize], dom: Dom, rng: &mut Rng) -> Tensor<f64> {
    let r = shape.len();
    match view {
        View::Contiguous => tensor(dom, shape, rng),
        View::Transposed => {
            assert!(r >= 2, "audit: a transposed view needs rank ≥ 2");
            let mut s = shape.to_vec();
            s.swap(r - 2, r - 1);
            tensor(dom, &s, rng).transpose(r - 2, r - 1)
        }
        View::Permuted => {
            let perm: Vec<usize> = (0..r).map(|k| (k + 1) % r).collect();
            let mut s = vec![0; r];
            for k in 0..r {
                s[perm[k]] = shape[k];
            }
            tensor(dom, &s, rng).permute(&perm)
        }
        View::Sliced => {
            let mut s = shape.to_vec();
            s[r - 1] = 2 * shape[r - 1] + 1;
            s[0] += 1;
            let base = tensor(dom, &s, rng);
            base.narrow(0, 1, shape[0]).slice(r - 1, 1, 2 * shape[r - 1] + 1, 2)
        }
        View::Broadcast => panic!("audit: a broadcast input is made by `input`"),
    }
}

pub fn describe(view: View, shape: &[usize]) -> String {
    match view {
        View::Contiguous => format!("contiguous {shape:?}"),
        View::Transposed => format!("transposed view {shape:?}"),
        View::Permuted => format!("permuted view {shape:?}"),
        View::Sliced => format!("sliced view {shape:?} (step 2, offset)"),
        View::Broadcast => {
            let axis = shape.iter().position(|&d| d > 1).unwrap_or(0);
            let mut small = shape.to_vec();
            small[axis] = 1;
            format!("broadcast {small:?}→{shape:?}")
        }
    }
}

/// A generator seeded by the op name and a variant, independent of registry order.
pub fn rng_for(op: &str, variant: u64) -> Rng {
    let h = op.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    Rng::stream(h, variant)
}

/// `rank` random lengths in `lo..=hi`.
pub fn dims(rng: &mut Rng, rank: usize, lo: usize, hi: usize) -> Vec<usize> {
    (0..rank).map(|_| lo + rng.below((hi - lo + 1) as u64) as usize).collect()
}

pub fn default() -> CheckOptions {
    CheckOptions::default()
}

/// `shape` in each of the given layouts (see [`input`]).
pub fn layouts(views: &[View], shape: &[usize], dom: Dom, rng: &mut Rng, params: &str) -> Vec<Input> {
    views.iter().map(|&v| input(v, shape, dom, rng, params)).collect()
}

/// Every layout of a matrix.
pub const ALL2: [View; 4] = [View::Contiguous, View::Transposed, View::Sliced, View::Broadcast];
/// Every layout of a rank-3 (or higher) tensor.
pub const ALL3: [View; 5] = [View::Contiguous, View::Transposed, View::Permuted, View::Sliced, View::Broadcast];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_have_the_logical_shape_and_layout() {
        let mut rng = Rng::new(1);
        for view in ALL3 {
            let x = input(view, &[2, 3, 4], Dom::Any, &mut rng, "");
            let t = &x.value;
            assert!(!t.layout().has_aliasing());
            if view == View::Broadcast {
                assert_eq!(t.shape(), &[1, 3, 4]);
                assert_eq!(x.target.as_deref(), Some(&[2, 3, 4][..]));
                assert_eq!(x.desc, "broadcast [1, 3, 4]→[2, 3, 4]");
            } else {
                assert_eq!(t.shape(), &[2, 3, 4]);
                assert_eq!(t.is_contiguous(), view == View::Contiguous, "{view:?}");
                assert!(x.target.is_none());
            }
        }
    }

    #[test]
    fn domains_keep_their_margins() {
        let mut rng = Rng::new(2);
        let v = values(Dom::Away(&[-0.3, 0.3]), 1000, &mut rng);
        assert!(v.iter().all(|x| (x.abs() - 0.3).abs() >= MARGIN));
        let mut d = values(Dom::Distinct, 1000, &mut rng);
        d.sort_by(f64::total_cmp);
        assert!(d.windows(2).all(|w| w[1] - w[0] >= 0.025));
        let a = values(Dom::Grid(0.0), 100, &mut rng);
        let b = values(Dom::Grid(0.05), 100, &mut rng);
        assert!(a.iter().all(|x| b.iter().all(|y| (x - y).abs() >= MARGIN - 1e-12)));
    }
}

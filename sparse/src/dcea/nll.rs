//! The negative log-likelihoods of the three families, each one fused rule ([`nll`]).

use autograd::{Backward, Reduction, Var};
use engine::kernels::elementwise::{sigmoid, softplus};
use engine::{Element, Tensor};

use super::config::Family;

/// The rule of the three NLLs: inputs `(η, y)`, scalar output.
/// `∂η = g·c·(f⁻¹(η) − y)` (the canonical-link identity), `∂y = g·c·(y − η)` (Gaussian) or
/// `−g·c·η` (Binomial, Poisson), with `c = 1` (sum) or `1/n` (mean).
struct NllBackward {
    /// The family (its `M` for the Binomial).
    family: Family,
    /// `c`: 1 for a sum, `1/n` for a mean.
    scale: f64,
}

impl<T: Element> Backward<T> for NllBackward {
    fn name(&self) -> &str {
        nll_name(self.family)
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (eta, y) = (inputs[0], inputs[1]);
        let c = T::of(g.item().as_f64() * self.scale);
        let family = self.family;
        let d_eta = needed[0].then(|| match family {
            Family::Gaussian => eta.zip_map(y, "gaussian_nll", move |e, y| c * (e - y)),
            Family::Binomial { trials } => {
                let m = T::of(trials);
                eta.zip_map(y, "binomial_nll", move |e, y| c * (m * sigmoid(e) - y))
            }
            Family::Poisson => eta.zip_map(y, "poisson_nll", move |e, y| c * (e.exp() - y)),
        });
        let d_y = needed[1].then(|| match family {
            Family::Gaussian => y.zip_map(eta, "gaussian_nll", move |y, e| c * (y - e)),
            _ => eta.map(move |e| -c * e),
        });
        Ok(vec![d_eta, d_y])
    }
}

/// The name the NLL of family `f` records on the tape.
pub fn nll_name(f: Family) -> &'static str {
    match f {
        Family::Gaussian => "gaussian_nll",
        Family::Binomial { .. } => "binomial_nll",
        Family::Poisson => "poisson_nll",
    }
}

/// The negative log-likelihood of `y` under natural parameter `eta` (same shape), up to
/// constants, summed or averaged over every element:
///
/// | family | per element | `∂η` |
/// | --- | --- | --- |
/// | Gaussian | `½(y − η)²` | `η − y` |
/// | Binomial (`M`) | `M·log(1 + e^η) − y·η` (softplus evaluated without overflow) | `M·σ(η) − y` |
/// | Poisson | `e^η − y·η` | `e^η − y` |
///
/// One fused rule per family (`gaussian_nll`, `binomial_nll`, `poisson_nll`) instead of the
/// composite of 3–4 recorded image-sized ops: the gradient is the canonical-link identity
/// `f⁻¹(η) − y` in one pass, the Binomial's softplus is the engine's stable one, and the tape
/// keeps no intermediate. Each is audited by central differences (`crate::audit`) and checked
/// against its composite (`tests/dcea.rs`).
///
/// **Panics** if the shapes differ (naming both) or the Binomial's `M` is not positive.
#[track_caller]
pub fn nll<'t, T: Element>(family: Family, eta: &Var<'t, T>, y: &Var<'t, T>, reduction: Reduction) -> Var<'t, T> {
    let name = nll_name(family);
    let (e, yv) = (eta.value(), y.value());
    assert_eq!(e.shape(), yv.shape(), "{name}: η {:?} and y {:?} must have the same shape", e.shape(), yv.shape());
    let per = match family {
        Family::Gaussian => e.zip_map(&yv, name, |e, y| {
            let d = y - e;
            T::of(0.5) * d * d
        }),
        Family::Binomial { trials } => {
            assert!(trials > 0.0, "{name}: M must be positive, got {trials}");
            let m = T::of(trials);
            e.zip_map(&yv, name, move |e, y| m * softplus(e) - y * e)
        }
        Family::Poisson => e.zip_map(&yv, name, |e, y| e.exp() - y * e),
    };
    let scale = match reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / (e.numel().max(1) as f64),
    };
    let total = per.sum_all();
    let out = if scale == 1.0 { total } else { total.mul_scalar(scale) };
    eta.tape().push_op(out, &[*eta, *y], NllBackward { family, scale })
}

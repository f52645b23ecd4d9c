//! A DCEA's parameters: the plain tensors ([`Dcea`], initialised with the step folded in) and
//! their leaves on a tape ([`DceaParams`]).

use autograd::{Grads, Tape, Var};
use engine::{Element, Rng, Tensor};

use super::config::DceaConfig;
use super::fold::fold_lipschitz;
use crate::error::SparseError;

/// A DCEA's parameters, by name: `dcea.H` `[K, C, kh, kw]`, and when untied `dcea.We` and
/// `dcea.Wd` of the same shape; `dcea.b` `[K]`.
#[derive(Clone, Debug)]
pub struct Dcea<T: Element> {
    pub config: DceaConfig,
    /// `dcea.H`: the dictionary of the loop's `f⁻¹(H x)` (and of every product when tied).
    pub h: Tensor<T>,
    /// `dcea.We`: the encoder bank of the `Weᵀ` step (untied only).
    pub we: Option<Tensor<T>>,
    /// `dcea.Wd`: the decoder bank of `η̂ = Wd x_T` (untied only).
    pub wd: Option<Tensor<T>>,
    /// `dcea.b`: one threshold per filter, shared by the iterations.
    pub b: Tensor<T>,
    /// `L` (factor included) when the step was folded into the filters.
    pub lipschitz: Option<f64>,
}

impl<T: Element> Dcea<T> {
    /// A DCEA with standard-normal filters drawn from `rng`, then as [`Dcea::from_filters`].
    ///
    /// # Errors
    /// Those of [`Dcea::from_filters`].
    /// **Panics** if the configuration is invalid ([`DceaConfig::validate`]).
    #[track_caller]
    pub fn new(config: DceaConfig, rng: &mut Rng) -> Result<Dcea<T>, SparseError> {
        config.validate();
        let h = Tensor::randn(&config.filter_shape(), rng);
        Dcea::from_filters(config, h)
    }

    /// A DCEA initialised from the filters `h` `[K, C, kh, kw]`: each filter is scaled to unit
    /// Frobenius norm (as the authors do with random or given filters), then, with
    /// [`DceaConfig::fold`], the bank is divided by `√L` (module docs). `We` and `Wd` start
    /// equal to `H`; every entry of `b` is `b_init`.
    ///
    /// # Errors
    /// [`SparseError::NonFinite`] if a filter is zero or not finite, [`SparseError::BadStep`] if
    /// the power iteration's `L` is not finite and positive, and the power iteration's own
    /// errors (an operator value that overflowed).
    /// **Panics** if the configuration is invalid or `h` does not have the filter shape.
    #[track_caller]
    pub fn from_filters(config: DceaConfig, h: Tensor<T>) -> Result<Dcea<T>, SparseError> {
        config.validate();
        let shape = config.filter_shape();
        assert_eq!(h.shape(), &shape, "Dcea::from_filters: filters must be {shape:?}");
        let per = shape[1] * shape[2] * shape[3];
        let mut data = h.contiguous().into_vec();
        for (k, f) in data.chunks_mut(per).enumerate() {
            let n = f.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt();
            if !(n.is_finite() && n > 0.0) {
                return Err(SparseError::NonFinite { op: "dcea", what: "filter norm", row: k, col: 0, value: n });
            }
            f.iter_mut().for_each(|v| *v = T::of(v.as_f64() / n));
        }
        let mut h = Tensor::from_vec(data, &shape);
        let mut lipschitz = None;
        if let Some(fold) = config.fold {
            let l = fold_lipschitz(&h, &config, &fold)?;
            h = h.div_scalar(l.sqrt());
            lipschitz = Some(l);
        }
        let (we, wd) = if config.tied { (None, None) } else { (Some(h.deep_clone()), Some(h.deep_clone())) };
        let b = Tensor::full(&[config.filters], T::of(config.b_init));
        Ok(Dcea { config, h, we, wd, b, lipschitz })
    }

    /// The parameter names, in the order of [`Dcea::params`]: `dcea.H`, (`dcea.We`,
    /// `dcea.Wd` when untied), `dcea.b`.
    pub fn names(&self) -> Vec<String> {
        let mut n = vec!["dcea.H".to_string()];
        if !self.config.tied {
            n.extend(["dcea.We".to_string(), "dcea.Wd".to_string()]);
        }
        n.push("dcea.b".to_string());
        n
    }

    /// The parameters in the order of [`Dcea::names`].
    pub fn params(&self) -> Vec<&Tensor<T>> {
        let mut p = vec![&self.h];
        p.extend(self.we.iter().chain(&self.wd));
        p.push(&self.b);
        p
    }

    /// The parameters, mutably, in the order of [`Dcea::names`] (for an optimiser step).
    pub fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut p = vec![&mut self.h];
        p.extend(self.we.iter_mut().chain(self.wd.iter_mut()));
        p.push(&mut self.b);
        p
    }

    /// The parameters as named leaves of `tape`.
    pub fn bind<'t>(&self, tape: &'t Tape<T>) -> DceaParams<'t, T> {
        let h = tape.leaf_named(self.h.clone(), "dcea.H");
        let (we, wd) = match (&self.we, &self.wd) {
            (Some(we), Some(wd)) => (tape.leaf_named(we.clone(), "dcea.We"), tape.leaf_named(wd.clone(), "dcea.Wd")),
            _ => (h, h),
        };
        let b = tape.leaf_named(self.b.clone(), "dcea.b");
        DceaParams { h, we, wd, b, tied: self.config.tied }
    }
}

/// A DCEA's parameters on a tape. Tied: `we` and `wd` are `h` itself.
#[derive(Clone, Copy, Debug)]
pub struct DceaParams<'t, T: Element> {
    pub h: Var<'t, T>,
    pub we: Var<'t, T>,
    pub wd: Var<'t, T>,
    pub b: Var<'t, T>,
    pub tied: bool,
}

impl<'t, T: Element> DceaParams<'t, T> {
    /// The variables in the order of [`Dcea::names`].
    pub fn vars(&self) -> Vec<Var<'t, T>> {
        if self.tied {
            vec![self.h, self.b]
        } else {
            vec![self.h, self.we, self.wd, self.b]
        }
    }

    /// Their gradients in the order of [`Dcea::names`] (for [`autograd::optim::Optimizer`]).
    pub fn grads(&self, g: &Grads<T>) -> Vec<Option<Tensor<T>>> {
        self.vars().iter().map(|v| g.get(v).cloned()).collect()
    }
}

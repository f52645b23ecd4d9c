//! Optimisers with PyTorch semantics, learning-rate schedules, and post-step hooks
//! (projections and proximal steps) that later layers need.
//!
//! An optimiser updates plain tensors in place (copy-on-write if shared) from gradients
//! that line up with them by position; its state is kept per position.
//!
//! ```
//! use sparsegrad_autograd::optim::{Optimizer, Sgd};
//! use engine::Tensor;
//! let mut w = Tensor::<f64>::from([1.0, 2.0]);
//! let mut opt = Sgd::new(0.1).momentum(0.9);
//! opt.step(&mut [&mut w], &[Some(Tensor::from([1.0, -1.0]))]);
//! assert_eq!(w.to_vec(), vec![0.9, 2.1]);
//! ```

use engine::{Element, Tensor};

/// A hook run on a parameter after every optimiser step, given the step's learning rate.
pub trait PostStep<T: Element>: Send + Sync {
    fn name(&self) -> &str;
    fn apply(&self, param: &mut Tensor<T>, lr: f64);
}

/// Projects every atom onto the unit ℓ2 ball: `d ← d / max(1, ‖d‖₂)`.
/// `atom_axes` are the axes spanning one atom: `[0]` for a dictionary `D ∈ R^{m×k}` whose
/// columns are atoms; `[1, 2, 3]` for conv filters `[O, C, kh, kw]`. With `exact: true`
/// atoms are rescaled to unit norm exactly (`d ← d / ‖d‖₂`, zero atoms left at zero).
#[derive(Clone, Debug)]
pub struct UnitNormAtoms {
    pub atom_axes: Vec<usize>,
    pub exact: bool,
}

impl<T: Element> PostStep<T> for UnitNormAtoms {
    fn name(&self) -> &str {
        "unit_norm_atoms"
    }
    fn apply(&self, param: &mut Tensor<T>, _lr: f64) {
        let norms = param.norm_l2(&self.atom_axes, true);
        let exact = self.exact;
        // Divide (rather than multiply by a reciprocal) so unit-norm atoms stay exact.
        let divisor = norms.map(move |n| if (exact && n > T::zero()) || n > T::one() { n } else { T::one() });
        *param = param.div(&divisor);
    }
}

/// The ℓ1 proximal step `w ← S_{lr·ζ}(w)` (soft-threshold), which makes exact zeros.
#[derive(Clone, Debug)]
pub struct L1Prox {
    pub zeta: f64,
}

impl<T: Element> PostStep<T> for L1Prox {
    fn name(&self) -> &str {
        "l1_prox"
    }
    fn apply(&self, param: &mut Tensor<T>, lr: f64) {
        *param = param.soft_threshold(lr * self.zeta);
    }
}

/// An optimiser's state, for checkpoints: its step count and, per parameter position, its
/// named buffers with PyTorch's slot names (`momentum_buffer` for SGD; `exp_avg`,
/// `exp_avg_sq` for Adam), as flat tensors of the parameter's length.
#[derive(Clone, Debug, Default)]
pub struct OptimState<T: Element> {
    /// Updates made so far (Adam's `t`, which its bias corrections depend on).
    pub step: u64,
    /// `(parameter position, slot name, values)`, by position then slot.
    pub slots: Vec<(usize, String, Tensor<T>)>,
}

/// An optimiser over a list of parameters.
///
/// Implementations provide the raw update ([`Optimizer::update`]) and their post-step hooks;
/// [`Optimizer::step`] and [`Optimizer::step_named`] run the update, then the hooks.
pub trait Optimizer<T: Element> {
    /// The update alone. `grads[i]` is the gradient of `params[i]` (`None`: no gradient; the
    /// parameter is left unchanged). **Panics** if the lengths or shapes disagree.
    fn update(&mut self, params: &mut [&mut Tensor<T>], grads: &[Option<Tensor<T>>]);
    /// The post-step hooks attached to this optimiser.
    fn hooks(&self) -> &Hooks<T>;
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);

    /// A short name of the algorithm (`sgd`, `adam`, `adamw`), for checkpoints and logs.
    fn kind(&self) -> &str {
        "custom"
    }

    /// The hyper-parameters as `(name, value)` text (`lr`, `momentum`, …), for checkpoints.
    fn hyperparameters(&self) -> Vec<(String, String)> {
        vec![("lr".to_string(), self.lr().to_string())]
    }

    /// The state a resumed run needs to continue bit-identically (see [`OptimState`]).
    fn state(&self) -> OptimState<T> {
        OptimState::default()
    }

    /// Replaces the state by `state` (as [`Optimizer::state`] returned it).
    ///
    /// # Errors
    /// A slot this optimiser does not have, or a state it cannot hold; the message names the
    /// slot and its parameter position. The state is unchanged on error.
    fn load_state(&mut self, state: OptimState<T>) -> Result<(), String> {
        match state.slots.first() {
            None => Ok(()),
            Some((i, slot, _)) => Err(format!("{}: no state slot '{slot}' (parameter {i})", self.kind())),
        }
    }

    /// One update followed by the hooks attached by position (a parameter without a gradient
    /// still gets its hooks). **Panics** if the lengths or shapes disagree, or if a hook is
    /// attached by name (use [`Optimizer::step_named`]).
    #[track_caller]
    fn step(&mut self, params: &mut [&mut Tensor<T>], grads: &[Option<Tensor<T>>]) {
        self.update(params, grads);
        self.hooks().run(None, params, self.lr());
    }

    /// [`Optimizer::step`] for parameters with names (`names[i]` is the name of `params[i]`,
    /// e.g. `ParamSet::names`), so hooks attached by name ([`Hooks::by_name`]) find theirs.
    /// **Panics** if a hook names a parameter that is not in `names`, listing the names.
    #[track_caller]
    fn step_named(&mut self, names: &[String], params: &mut [&mut Tensor<T>], grads: &[Option<Tensor<T>>]) {
        assert_eq!(names.len(), params.len(), "step_named: {} names for {} parameters", names.len(), params.len());
        self.update(params, grads);
        self.hooks().run(Some(names), params, self.lr());
    }
}

/// Which parameter a hook is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The parameter at this position.
    Index(usize),
    /// The parameter with this name (`"csf1.dictionary"`).
    Name(String),
}

/// Post-step hooks, each attached to one parameter by position or by name.
#[derive(Default)]
pub struct Hooks<T: Element> {
    hooks: Vec<(Target, Box<dyn PostStep<T>>)>,
}

impl<T: Element> Hooks<T> {
    /// Attaches `hook` to the parameter at `index`.
    pub fn by_index(&mut self, index: usize, hook: impl PostStep<T> + 'static) {
        self.hooks.push((Target::Index(index), Box::new(hook)));
    }

    /// Attaches `hook` to the parameter named `name` (resolved at every named step).
    pub fn by_name(&mut self, name: &str, hook: impl PostStep<T> + 'static) {
        self.hooks.push((Target::Name(name.to_string()), Box::new(hook)));
    }

    /// The attached hooks: target and hook name, in order.
    pub fn list(&self) -> Vec<(Target, String)> {
        self.hooks.iter().map(|(t, h)| (t.clone(), h.name().to_string())).collect()
    }

    #[track_caller]
    fn run(&self, names: Option<&[String]>, params: &mut [&mut Tensor<T>], lr: f64) {
        for (target, h) in &self.hooks {
            let i = match target {
                Target::Index(i) => *i,
                Target::Name(name) => {
                    let names = names.unwrap_or_else(|| {
                        panic!("post-step `{}` is attached to parameter `{name}`: use step_named", h.name())
                    });
                    names.iter().position(|n| n == name).unwrap_or_else(|| {
                        panic!("post-step `{}`: no parameter named `{name}` among {names:?}", h.name())
                    })
                }
            };
            if let Some(p) = params.get_mut(i) {
                h.apply(p, lr);
            }
        }
    }
}

#[track_caller]
fn check_lengths<T: Element>(op: &str, params: &[&mut Tensor<T>], grads: &[Option<Tensor<T>>]) {
    assert_eq!(params.len(), grads.len(), "{op}: {} parameters but {} gradients", params.len(), grads.len());
    for (i, (p, g)) in params.iter().zip(grads).enumerate() {
        if let Some(g) = g {
            assert_eq!(
                p.shape(),
                g.shape(),
                "{op}: parameter {i} has shape {:?}, its gradient {:?}",
                p.shape(),
                g.shape()
            );
        }
    }
}

/// Stochastic gradient descent with PyTorch's semantics:
/// `d = g + wd·p`; with momentum `b ← μ·b + (1 − dampening)·d` (`b = d` on the first step),
/// `d = d + μ·b` (Nesterov) or `d = b`; then `p ← p − lr·d`.
pub struct Sgd<T: Element> {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    steps: u64,
    buffers: Vec<Option<Vec<T>>>,
    hooks: Hooks<T>,
}

impl<T: Element> Sgd<T> {
    pub fn new(lr: f64) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            steps: 0,
            buffers: vec![],
            hooks: Hooks::default(),
        }
    }
    pub fn momentum(self, momentum: f64) -> Self {
        Sgd { momentum, ..self }
    }
    pub fn dampening(self, dampening: f64) -> Self {
        Sgd { dampening, ..self }
    }
    pub fn nesterov(self, nesterov: bool) -> Self {
        Sgd { nesterov, ..self }
    }
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        Sgd { weight_decay, ..self }
    }
    /// Runs `hook` on parameter `index` after every step.
    pub fn with_hook(mut self, index: usize, hook: impl PostStep<T> + 'static) -> Self {
        self.hooks.by_index(index, hook);
        self
    }
    /// Runs `hook` on the parameter named `name` after every [`Optimizer::step_named`].
    pub fn with_post_step(mut self, name: &str, hook: impl PostStep<T> + 'static) -> Self {
        self.hooks.by_name(name, hook);
        self
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    #[track_caller]
    fn update(&mut self, params: &mut [&mut Tensor<T>], grads: &[Option<Tensor<T>>]) {
        check_lengths("Sgd::step", params, grads);
        self.steps += 1;
        if self.buffers.len() < params.len() {
            self.buffers.resize(params.len(), None);
        }
        let (lr, mu, damp, wd) =
            (T::of(self.lr), T::of(self.momentum), T::of(self.dampening), T::of(self.weight_decay));
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let g = g.contiguous();
            let g = g.as_slice().expect("contiguous");
            let w = p.make_mut();
            let buf = &mut self.buffers[i];
            if self.momentum == 0.0 {
                for (w, &g) in w.iter_mut().zip(g) {
                    let d = g + wd * *w;
                    *w -= lr * d;
                }
                continue;
            }
            match buf {
                None => {
                    let mut b = Vec::with_capacity(w.len());
                    for (w, &g) in w.iter_mut().zip(g) {
                        let d = g + wd * *w;
                        let step = if self.nesterov { d + mu * d } else { d };
                        b.push(d);
                        *w -= lr * step;
                    }
                    *buf = Some(b);
                }
                Some(b) => {
                    for ((w, &g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
                        let d = g + wd * *w;
                        *b = mu * *b + (T::one() - damp) * d;
                        let step = if self.nesterov { d + mu * *b } else { *b };
                        *w -= lr * step;
                    }
                }
            }
        }
    }
    fn hooks(&self) -> &Hooks<T> {
        &self.hooks
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn kind(&self) -> &str {
        "sgd"
    }
    fn hyperparameters(&self) -> Vec<(String, String)> {
        let v = [
            ("lr", self.lr.to_string()),
            ("momentum", self.momentum.to_string()),
            ("dampening", self.dampening.to_string()),
            ("nesterov", self.nesterov.to_string()),
            ("weight_decay", self.weight_decay.to_string()),
        ];
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
    fn state(&self) -> OptimState<T> {
        let slots = (self.buffers.iter().enumerate())
            .filter_map(|(i, b)| {
                b.as_ref().map(|b| (i, "momentum_buffer".to_string(), Tensor::from_vec(b.clone(), &[b.len()])))
            })
            .collect();
        OptimState { step: self.steps, slots }
    }
    fn load_state(&mut self, state: OptimState<T>) -> Result<(), String> {
        let mut buffers = vec![];
        for (i, slot, t) in state.slots {
            if slot != "momentum_buffer" {
                return Err(format!("sgd: no state slot '{slot}' (parameter {i}); SGD keeps only 'momentum_buffer'"));
            }
            if self.momentum == 0.0 {
                return Err(format!("sgd: a momentum buffer for parameter {i}, but momentum is 0"));
            }
            if buffers.len() <= i {
                buffers.resize(i + 1, None);
            }
            if buffers[i].is_some() {
                return Err(format!("sgd: two momentum buffers for parameter {i}"));
            }
            buffers[i] = Some(t.contiguous().to_vec());
        }
        self.buffers = buffers;
        self.steps = state.step;
        Ok(())
    }
}

/// Adam (Kingma & Ba 2015) with PyTorch's semantics, and AdamW (decoupled weight decay,
/// Loshchilov & Hutter 2019) when `decoupled` is set:
/// `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`, `p ← p − lr·m̂ / (√v̂ + ε)` with bias
/// corrections `m̂ = m / (1 − β₁ᵗ)`, `v̂ = v / (1 − β₂ᵗ)`. Weight decay adds `wd·p` to `g`
/// (Adam) or multiplies `p` by `1 − lr·wd` first (AdamW).
pub struct Adam<T: Element> {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
    t: u64,
    m: Vec<Option<Vec<T>>>,
    v: Vec<Option<Vec<T>>>,
    hooks: Hooks<T>,
}

impl<T: Element> Adam<T> {
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 0,
            m: vec![],
            v: vec![],
            hooks: Hooks::default(),
        }
    }
    /// AdamW with weight decay `wd` (PyTorch's default is 0.01).
    pub fn adamw(lr: f64, wd: f64) -> Self {
        Adam { weight_decay: wd, decoupled: true, ..Adam::new(lr) }
    }
    pub fn betas(self, beta1: f64, beta2: f64) -> Self {
        Adam { beta1, beta2, ..self }
    }
    pub fn eps(self, eps: f64) -> Self {
        Adam { eps, ..self }
    }
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        Adam { weight_decay, ..self }
    }
    /// Runs `hook` on parameter `index` after every step.
    pub fn with_hook(mut self, index: usize, hook: impl PostStep<T> + 'static) -> Self {
        self.hooks.by_index(index, hook);
        self
    }
    /// Runs `hook` on the parameter named `name` after every [`Optimizer::step_named`].
    pub fn with_post_step(mut self, name: &str, hook: impl PostStep<T> + 'static) -> Self {
        self.hooks.by_name(name, hook);
        self
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    #[track_caller]
    fn update(&mut self, params: &mut [&mut Tensor<T>], grads: &[Option<Tensor<T>>]) {
        check_lengths("Adam::step", params, grads);
        if self.m.len() < params.len() {
            self.m.resize(params.len(), None);
            self.v.resize(params.len(), None);
        }
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let (b1, b2, eps, wd) = (T::of(self.beta1), T::of(self.beta2), T::of(self.eps), T::of(self.weight_decay));
        let step_size = T::of(self.lr / bc1);
        let sqrt_bc2 = T::of(bc2.sqrt());
        let decay = T::of(1.0 - self.lr * self.weight_decay);
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let g = g.contiguous();
            let g = g.as_slice().expect("contiguous");
            let w = p.make_mut();
            let m = self.m[i].get_or_insert_with(|| vec![T::zero(); w.len()]);
            let v = self.v[i].get_or_insert_with(|| vec![T::zero(); w.len()]);
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = if self.decoupled {
                    *w *= decay;
                    g
                } else {
                    g + wd * *w
                };
                *m = b1 * *m + (T::one() - b1) * g;
                *v = b2 * *v + (T::one() - b2) * g * g;
                *w -= step_size * *m / (v.sqrt() / sqrt_bc2 + eps);
            }
        }
    }
    fn hooks(&self) -> &Hooks<T> {
        &self.hooks
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn kind(&self) -> &str {
        if self.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }
    fn hyperparameters(&self) -> Vec<(String, String)> {
        let v = [
            ("lr", self.lr.to_string()),
            ("beta1", self.beta1.to_string()),
            ("beta2", self.beta2.to_string()),
            ("eps", self.eps.to_string()),
            ("weight_decay", self.weight_decay.to_string()),
            ("decoupled", self.decoupled.to_string()),
        ];
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
    fn state(&self) -> OptimState<T> {
        let flat = |b: &Vec<T>| Tensor::from_vec(b.clone(), &[b.len()]);
        let mut slots = vec![];
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            if let (Some(m), Some(v)) = (m, v) {
                slots.push((i, "exp_avg".to_string(), flat(m)));
                slots.push((i, "exp_avg_sq".to_string(), flat(v)));
            }
        }
        OptimState { step: self.t, slots }
    }
    fn load_state(&mut self, state: OptimState<T>) -> Result<(), String> {
        let n = state.slots.iter().map(|(i, _, _)| i + 1).max().unwrap_or(0);
        let mut m: Vec<Option<Vec<T>>> = vec![None; n];
        let mut v = m.clone();
        for (i, slot, t) in state.slots {
            let dst = match slot.as_str() {
                "exp_avg" => &mut m[i],
                "exp_avg_sq" => &mut v[i],
                _ => {
                    return Err(format!(
                        "{}: no state slot '{slot}' (parameter {i}); Adam keeps 'exp_avg' and 'exp_avg_sq'",
                        self.kind()
                    ))
                }
            };
            if dst.is_some() {
                return Err(format!("{}: two '{slot}' for parameter {i}", self.kind()));
            }
            *dst = Some(t.contiguous().to_vec());
        }
        for (i, (a, b)) in m.iter().zip(&v).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) if a.len() != b.len() => {
                    return Err(format!(
                        "{}: parameter {i} has 'exp_avg' of {} values but 'exp_avg_sq' of {}",
                        self.kind(),
                        a.len(),
                        b.len()
                    ))
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(format!("{}: parameter {i} has only one of 'exp_avg' and 'exp_avg_sq'", self.kind()))
                }
                _ => {}
            }
        }
        if n > 0 && state.step == 0 {
            return Err(format!("{}: moment estimates with a step count of 0", self.kind()));
        }
        self.m = m;
        self.v = v;
        self.t = state.step;
        Ok(())
    }
}

/// A learning-rate schedule: the rate for epoch (or step) `t` given the base rate.
pub trait LrSchedule {
    fn lr_at(&self, base_lr: f64, t: usize) -> f64;
}

/// `lr·γ^{⌊t / step_size⌋}` (PyTorch `StepLR`).
#[derive(Clone, Copy, Debug)]
pub struct StepLr {
    pub step_size: usize,
    pub gamma: f64,
}

impl LrSchedule for StepLr {
    fn lr_at(&self, base_lr: f64, t: usize) -> f64 {
        base_lr * self.gamma.powi((t / self.step_size.max(1)) as i32)
    }
}

/// `η_min + (lr − η_min)·(1 + cos(π·t / T_max)) / 2` (PyTorch `CosineAnnealingLR`, closed
/// form), constant at `η_min` after `T_max`.
#[derive(Clone, Copy, Debug)]
pub struct CosineLr {
    pub t_max: usize,
    pub eta_min: f64,
}

impl LrSchedule for CosineLr {
    fn lr_at(&self, base_lr: f64, t: usize) -> f64 {
        let t = t.min(self.t_max) as f64;
        self.eta_min
            + (base_lr - self.eta_min) * (1.0 + (std::f64::consts::PI * t / self.t_max.max(1) as f64).cos()) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch reference, computed by hand from torch.optim.SGD's update:
    /// p = 1, g = 1 every step, lr = 0.1, momentum 0.9:
    /// b₁ = 1 → p = 0.9;  b₂ = 1.9 → p = 0.71;  b₃ = 2.71 → p = 0.439.
    #[test]
    fn sgd_momentum_matches_pytorch_sequence() {
        let mut p = Tensor::<f64>::from([1.0]);
        let mut opt = Sgd::new(0.1).momentum(0.9);
        let mut seen = vec![];
        for _ in 0..3 {
            opt.step(&mut [&mut p], &[Some(Tensor::from([1.0]))]);
            seen.push(p.item());
        }
        for (a, b) in seen.iter().zip([0.9, 0.71, 0.439]) {
            assert!((a - b).abs() < 1e-12, "{seen:?}");
        }
    }

    /// Nesterov: d = g + μ·b. Step 1: b = 1, d = 1.9 → p = 1 − 0.19 = 0.81.
    #[test]
    fn sgd_nesterov_first_step() {
        let mut p = Tensor::<f64>::from([1.0]);
        let mut opt = Sgd::new(0.1).momentum(0.9).nesterov(true);
        opt.step(&mut [&mut p], &[Some(Tensor::from([1.0]))]);
        assert!((p.item() - 0.81).abs() < 1e-12);
    }

    /// Adam's first step moves every coordinate by lr·sign(g) (m̂ = g, v̂ = g²).
    #[test]
    fn adam_first_step_is_lr_sign() {
        let mut p = Tensor::<f64>::from([0.0, 0.0]);
        let mut opt = Adam::new(0.01);
        opt.step(&mut [&mut p], &[Some(Tensor::from([3.0, -0.5]))]);
        let v = p.to_vec();
        assert!((v[0] + 0.01).abs() < 1e-9 && (v[1] - 0.01).abs() < 1e-9, "{v:?}");
    }

    /// Two steps, export, two more steps on a fresh optimiser loaded with the state: the same
    /// bits as four uninterrupted steps (gradients vary per step so the state matters).
    fn resume_is_exact<O: Optimizer<f64>>(make: impl Fn() -> O) {
        let g =
            |k: usize| vec![Some(Tensor::from([1.0 + k as f64, -0.5])), None, Some(Tensor::from([0.25 * k as f64]))];
        let start = || (Tensor::<f64>::from([1.0, 2.0]), Tensor::<f64>::from([3.0]), Tensor::<f64>::from([-1.0]));
        let (mut a, mut b, mut c) = start();
        let mut opt = make();
        for k in 0..4 {
            opt.step(&mut [&mut a, &mut b, &mut c], &g(k));
        }
        let (mut a2, mut b2, mut c2) = start();
        let mut first = make();
        for k in 0..2 {
            first.step(&mut [&mut a2, &mut b2, &mut c2], &g(k));
        }
        let state = first.state();
        assert_eq!(state.step, 2);
        let mut second = make();
        second.load_state(state).unwrap();
        for k in 2..4 {
            second.step(&mut [&mut a2, &mut b2, &mut c2], &g(k));
        }
        assert_eq!((a.to_vec(), b.to_vec(), c.to_vec()), (a2.to_vec(), b2.to_vec(), c2.to_vec()));
        assert_eq!(opt.state().step, second.state().step);
    }

    #[test]
    fn sgd_and_adam_state_round_trips() {
        resume_is_exact(|| Sgd::new(0.1).momentum(0.9).nesterov(true).weight_decay(0.01));
        resume_is_exact(|| Adam::new(0.01).weight_decay(0.01));
        resume_is_exact(|| Adam::adamw(0.01, 0.1));
        // slot names are PyTorch's; the parameter without a gradient has no slot
        let mut p = [Tensor::<f64>::from([1.0]), Tensor::from([2.0])];
        let mut sgd = Sgd::new(0.1).momentum(0.9);
        let [p0, p1] = &mut p;
        sgd.step(&mut [p0, p1], &[None, Some(Tensor::from([1.0]))]);
        let slots: Vec<(usize, String)> = sgd.state().slots.into_iter().map(|(i, s, _)| (i, s)).collect();
        assert_eq!(slots, vec![(1, "momentum_buffer".to_string())]);
    }

    #[test]
    fn loading_a_foreign_state_is_an_error() {
        let mut adam = Adam::<f64>::new(0.1);
        let st = OptimState { step: 1, slots: vec![(0, "momentum_buffer".into(), Tensor::from([1.0]))] };
        assert!(adam.load_state(st).unwrap_err().contains("'momentum_buffer' (parameter 0)"));
        let st = OptimState { step: 1, slots: vec![(2, "exp_avg".into(), Tensor::from([1.0]))] };
        assert!(adam.load_state(st).unwrap_err().contains("only one of"));
        let mut plain = Sgd::<f64>::new(0.1);
        let st = OptimState { step: 1, slots: vec![(0, "momentum_buffer".into(), Tensor::from([1.0]))] };
        assert!(plain.load_state(st).unwrap_err().contains("momentum is 0"));
        assert_eq!(adam.state().step, 0);
    }

    #[test]
    fn hooks_project_and_threshold() {
        let mut d = Tensor::<f64>::from_vec(vec![3.0, 0.1, 4.0, 0.1], &[2, 2]); // columns [3,4], [0.1,0.1]
        let mut w = Tensor::<f64>::from([0.05, -0.5]);
        let mut opt = Sgd::new(0.1)
            .with_hook(0, UnitNormAtoms { atom_axes: vec![0], exact: false })
            .with_hook(1, L1Prox { zeta: 1.0 });
        opt.step(&mut [&mut d, &mut w], &[None, None]);
        assert_eq!(d.to_vec(), vec![0.6, 0.1, 0.8, 0.1]); // first column scaled to unit norm, second untouched
        assert_eq!(w.to_vec(), vec![0.0, -0.4]); // threshold lr·ζ = 0.1
    }

    #[test]
    fn hooks_attached_by_name_find_their_parameter() {
        // Atoms [3, 4] and [0.1, 0.1]: only the first is longer than 1 and is scaled to unit norm.
        let mut d = Tensor::<f64>::from_vec(vec![3.0, 0.1, 4.0, 0.1], &[2, 2]);
        let mut w = Tensor::<f64>::from([5.0, 0.0]);
        let names = vec!["fc.weight".to_string(), "sf.dictionary".to_string()];
        let mut opt = Sgd::new(0.1).with_post_step("sf.dictionary", UnitNormAtoms { atom_axes: vec![0], exact: false });
        opt.step_named(&names, &mut [&mut w, &mut d], &[None, None]);
        assert_eq!(d.to_vec(), vec![0.6, 0.1, 0.8, 0.1]);
        assert_eq!(w.to_vec(), vec![5.0, 0.0]);
        assert_eq!(opt.hooks().list(), vec![(Target::Name("sf.dictionary".into()), "unit_norm_atoms".into())]);
    }

    #[test]
    #[should_panic(expected = "no parameter named `sf.dict`")]
    fn a_hook_naming_a_missing_parameter_panics_with_the_names() {
        let mut w = Tensor::<f64>::from([1.0]);
        let mut opt = Sgd::new(0.1).with_post_step("sf.dict", UnitNormAtoms { atom_axes: vec![0], exact: false });
        opt.step_named(&["fc.weight".to_string()], &mut [&mut w], &[None]);
    }

    #[test]
    #[should_panic(expected = "use step_named")]
    fn a_named_hook_needs_a_named_step() {
        let mut w = Tensor::<f64>::from([1.0]);
        let mut opt = Sgd::new(0.1).with_post_step("w", L1Prox { zeta: 1.0 });
        opt.step(&mut [&mut w], &[None]);
    }

    #[test]
    fn schedules() {
        assert_eq!(StepLr { step_size: 10, gamma: 0.1 }.lr_at(1.0, 25), 0.010000000000000002);
        let c = CosineLr { t_max: 10, eta_min: 0.0 };
        assert_eq!(c.lr_at(1.0, 0), 1.0);
        assert!((c.lr_at(1.0, 5) - 0.5).abs() < 1e-15);
        assert!(c.lr_at(1.0, 10).abs() < 1e-15);
    }
}

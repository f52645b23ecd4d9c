//! Layers: one trait, plain structs, parameters named by where they sit.
//!
//! A network's tensors live in one [`Store`]: its **parameters** (trained by the optimiser)
//! and its **buffers** (state that is not trained but is saved with it: BatchNorm's running
//! statistics, the CSC power iteration's warm-start vector, the fixed DCT filters). Names
//! follow PyTorch's `state_dict` convention (`blocks.2.c1.weight`): a layer is built with a
//! [`ParamBuilder`] whose prefix says where it sits ([`ParamBuilder::pp`]), so a name is
//! never typed twice and a checkpoint saved by PyTorch finds its tensors here.
//!
//! A step binds the store to a tape as a [`Ctx`] ([`Store::bind`]); a layer's
//! [`Layer::forward`] reads its parameters from the context (`cx.param(id)`), which puts
//! each on the tape the first time it is used. Train and eval behaviour is an explicit
//! argument ([`Mode`]) carried by the context. A layer that must change a parameter before
//! using it (the CSC layer renormalises its atoms, as the authors do in place) calls
//! [`Ctx::update_param`] before [`Ctx::param`]; buffers are read and written through the
//! context and written back by [`Ctx::finish`].
//!
//! ```
//! use autograd::Tape;
//! use engine::{Rng, Tensor};
//! use sparsegrad_models::layers::{Layer, Linear, Mode, Store};
//! let mut rng = Rng::new(0);
//! let mut store = Store::<f64>::new();
//! let fc = Linear::new(&mut store.builder(&mut rng).pp("fc"), 3, 2, true);
//! assert_eq!(store.names(), ["fc.weight", "fc.bias"]);
//! let tape = Tape::new();
//! let cx = store.bind(&tape, Mode::Train, 0);
//! let y = fc.forward(&cx, &tape.constant(Tensor::ones(&[4, 3]))).unwrap();
//! assert_eq!(y.shape(), [4, 2]);
//! ```

use std::cell::RefCell;
use std::fmt;

use autograd::optim::{Optimizer, PostStep};
use autograd::{Grads, Tape, Var};
use engine::{Element, Rng, Tensor};

pub mod basic;
pub mod conv;
pub mod csc;
pub mod dcea;
pub mod dct;
pub mod norm;
pub mod pool;
pub mod sc;
pub mod sf;

pub use basic::{Dropout, Flatten, Linear, Relu, Residual, Sequential};
pub use conv::{Conv2d, ConvTranspose2d};
pub use csc::{CscLayer, Lambda};
pub use dcea::DceaLayer;
pub use dct::{shrink_coefficients, DctConv2d};
pub use norm::BatchNorm2d;
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d};
pub use sc::SpatialContrasting;
pub use sf::{Csf, NonNegative, Sf};

/// Train or eval: what Dropout and BatchNorm do, and whether parameters enter the tape as
/// leaves (train) or constants (eval).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// An error of a layer's forward pass: from a solver (LARS, FISTA, DCEA), from the tape, or
/// a shape the layer cannot take (naming the layer and the shapes).
#[derive(Debug, Clone)]
pub enum Error {
    Sparse(sparse::SparseError),
    Autograd(autograd::Error),
    /// `what` names the layer or network and says what does not fit.
    Shape(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sparse(e) => write!(f, "{e}"),
            Error::Autograd(e) => write!(f, "{e}"),
            Error::Shape(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<sparse::SparseError> for Error {
    fn from(e: sparse::SparseError) -> Self {
        Error::Sparse(e)
    }
}

impl From<autograd::Error> for Error {
    fn from(e: autograd::Error) -> Self {
        Error::Autograd(e)
    }
}

pub type Result<V> = std::result::Result<V, Error>;

/// A layer: parameters and buffers in a [`Store`] (held by index), a forward on bound
/// variables. One trait, one element generic.
pub trait Layer<T: Element>: Send + Sync {
    /// The output for the input `x`, with the parameters and buffers of `cx`.
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>>;
}

impl<T: Element> Layer<T> for Box<dyn Layer<T>> {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        (**self).forward(cx, x)
    }
}

/// Index of a parameter in its [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

/// Index of a buffer in its [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferId(pub usize);

/// The named parameters and buffers of a network, and the post-steps attached to them.
#[derive(Default)]
pub struct Store<T: Element> {
    params: Vec<(String, Tensor<T>)>,
    buffers: Vec<(String, Tensor<T>)>,
    post: Vec<(usize, Box<dyn PostStep<T>>)>,
}

impl<T: Element> Clone for Store<T> {
    /// Parameters and buffers are cloned; post-steps are not (a clone is for evaluation).
    fn clone(&self) -> Self {
        Store { params: self.params.clone(), buffers: self.buffers.clone(), post: vec![] }
    }
}

impl<T: Element> fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("params", &self.params.iter().map(|(n, t)| (n, t.shape())).collect::<Vec<_>>())
            .field("buffers", &self.buffers.iter().map(|(n, t)| (n, t.shape())).collect::<Vec<_>>())
            .finish()
    }
}

impl<T: Element> Store<T> {
    pub fn new() -> Self {
        Store { params: vec![], buffers: vec![], post: vec![] }
    }

    /// A builder at the root (empty prefix) drawing initial values from `rng`.
    pub fn builder<'a>(&'a mut self, rng: &'a mut Rng) -> ParamBuilder<'a, T> {
        ParamBuilder { store: self, rng, prefix: String::new() }
    }

    /// Names of the parameters, in order.
    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Names of the buffers, in order.
    pub fn buffer_names(&self) -> Vec<&str> {
        self.buffers.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn param(&self, id: ParamId) -> &Tensor<T> {
        &self.params[id.0].1
    }

    pub fn param_mut(&mut self, id: ParamId) -> &mut Tensor<T> {
        &mut self.params[id.0].1
    }

    pub fn buffer(&self, id: BufferId) -> &Tensor<T> {
        &self.buffers[id.0].1
    }

    /// Every parameter, with its name.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Tensor<T>)> {
        self.params.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Every buffer, with its name.
    pub fn buffers(&self) -> impl Iterator<Item = (&str, &Tensor<T>)> {
        self.buffers.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The parameter or buffer called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.params.iter().chain(&self.buffers).find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Replaces the parameter or buffer called `name` (same shape). Returns an error naming
    /// the tensor and both shapes when the shape differs, or when no tensor has that name.
    pub fn set(&mut self, name: &str, value: Tensor<T>) -> std::result::Result<(), String> {
        let slot = self
            .params
            .iter_mut()
            .chain(self.buffers.iter_mut())
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("the network has no tensor '{name}'"))?;
        if slot.1.shape() != value.shape() {
            return Err(format!(
                "tensor '{name}': the network expects shape {:?}, got {:?}",
                slot.1.shape(),
                value.shape()
            ));
        }
        slot.1 = value.contiguous();
        Ok(())
    }

    /// Number of scalar parameters (trainable; buffers excluded).
    pub fn count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Number of parameters and buffers together.
    pub fn len(&self) -> usize {
        self.params.len() + self.buffers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The post-steps attached by the layers, as `(parameter name, hook name)`.
    pub fn post_steps(&self) -> Vec<(String, String)> {
        self.post.iter().map(|(i, h)| (self.params[*i].0.clone(), h.name().to_string())).collect()
    }

    /// Binds the store to `tape` for one forward in `mode`; `seed` seeds the context's
    /// random stream (Dropout).
    pub fn bind<'t>(&self, tape: &'t Tape<T>, mode: Mode, seed: u64) -> Ctx<'t, T> {
        Ctx {
            tape,
            mode,
            values: RefCell::new(self.params.iter().map(|(_, t)| t.clone()).collect()),
            updated: RefCell::new(vec![false; self.params.len()]),
            vars: RefCell::new(vec![None; self.params.len()]),
            buffers: RefCell::new(self.buffers.iter().map(|(_, t)| t.clone()).collect()),
            names: self.params.iter().map(|(n, _)| n.clone()).collect(),
            rng: RefCell::new(Rng::new(seed)),
        }
    }

    /// Binds the store to `tape` with its parameters already on the tape as `params` (one
    /// variable per parameter, in order): gradient checks pass their own leaves this way.
    /// **Panics** if the count or a shape differs.
    #[track_caller]
    pub fn bind_vars<'t>(&self, tape: &'t Tape<T>, params: &[Var<'t, T>], mode: Mode, seed: u64) -> Ctx<'t, T> {
        assert_eq!(
            params.len(),
            self.params.len(),
            "Store::bind_vars: {} variables for {} parameters",
            params.len(),
            self.params.len()
        );
        for ((n, t), v) in self.params.iter().zip(params) {
            assert_eq!(
                v.shape(),
                t.shape(),
                "Store::bind_vars: '{n}' has shape {:?}, the variable {:?}",
                t.shape(),
                v.shape()
            );
        }
        let cx = self.bind(tape, mode, seed);
        *cx.values.borrow_mut() = params.iter().map(|v| v.value()).collect();
        *cx.vars.borrow_mut() = params.iter().map(|v| Some(*v)).collect();
        cx
    }

    /// One optimiser step on every parameter with the gradients `grads` (aligned with the
    /// parameters, as [`Ctx::grads`] returns them), then the post-steps the layers attached
    /// (unit-norm atoms, shrinkage), given the optimiser's learning rate.
    #[track_caller]
    pub fn step(&mut self, opt: &mut dyn Optimizer<T>, grads: &[Option<Tensor<T>>]) {
        let names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        let mut values: Vec<&mut Tensor<T>> = self.params.iter_mut().map(|(_, t)| t).collect();
        opt.step_named(&names, &mut values, grads);
        let lr = opt.lr();
        for (i, hook) in &self.post {
            hook.apply(&mut self.params[*i].1, lr);
        }
    }
}

/// Builds a layer's parameters and buffers under a name prefix.
pub struct ParamBuilder<'a, T: Element> {
    store: &'a mut Store<T>,
    rng: &'a mut Rng,
    prefix: String,
}

impl<'a, T: Element> ParamBuilder<'a, T> {
    /// A builder for the sub-layer `name` (`blocks` → `blocks.0` → `blocks.0.c1`).
    pub fn pp(&mut self, name: impl fmt::Display) -> ParamBuilder<'_, T> {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        ParamBuilder { store: self.store, rng: self.rng, prefix }
    }

    /// The full name of `name` under this prefix.
    pub fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The random generator used for initial values.
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// Adds the parameter `name` with its initial value. **Panics** on a repeated name.
    #[track_caller]
    pub fn param(&mut self, name: &str, value: Tensor<T>) -> ParamId {
        let full = self.name(name);
        self.check_new(&full);
        self.store.params.push((full, value.contiguous()));
        ParamId(self.store.params.len() - 1)
    }

    /// Adds the buffer `name` (saved, not trained). **Panics** on a repeated name.
    #[track_caller]
    pub fn buffer(&mut self, name: &str, value: Tensor<T>) -> BufferId {
        let full = self.name(name);
        self.check_new(&full);
        self.store.buffers.push((full, value.contiguous()));
        BufferId(self.store.buffers.len() - 1)
    }

    /// Replaces the initial value of the parameter `id` (another initialisation scheme for a
    /// layer built with its default). **Panics** if the shape differs.
    #[track_caller]
    pub fn reinit(&mut self, id: ParamId, value: Tensor<T>) {
        let (name, old) = &mut self.store.params[id.0];
        assert_eq!(old.shape(), value.shape(), "ParamBuilder::reinit: '{name}' has shape {:?}", old.shape());
        *old = value.contiguous();
    }

    /// Attaches a post-step (run after every optimiser step) to the parameter `id`.
    pub fn post_step(&mut self, id: ParamId, hook: impl PostStep<T> + 'static) {
        self.store.post.push((id.0, Box::new(hook)));
    }

    #[track_caller]
    fn check_new(&self, full: &str) {
        assert!(self.store.get(full).is_none(), "ParamBuilder: the tensor '{full}' already exists");
    }
}

/// The store bound to a tape for one forward: parameters enter the tape when first used.
pub struct Ctx<'t, T: Element> {
    tape: &'t Tape<T>,
    mode: Mode,
    values: RefCell<Vec<Tensor<T>>>,
    updated: RefCell<Vec<bool>>,
    vars: RefCell<Vec<Option<Var<'t, T>>>>,
    buffers: RefCell<Vec<Tensor<T>>>,
    names: Vec<String>,
    rng: RefCell<Rng>,
}

impl<'t, T: Element> Ctx<'t, T> {
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The parameter `id` on the tape: a named leaf in train mode, a constant in eval mode.
    /// A constant freed by a [`Tape::scope`] it was first bound in (an eval forward that
    /// frees each layer's values) is bound again; a training leaf is never freed.
    pub fn param(&self, id: ParamId) -> Var<'t, T> {
        if let Some(v) = self.vars.borrow()[id.0] {
            if v.is_live() {
                return v;
            }
        }
        let value = self.values.borrow()[id.0].clone();
        let v = match self.mode {
            Mode::Train => self.tape.leaf_named(value, &self.names[id.0]),
            Mode::Eval => self.tape.constant(value),
        };
        self.vars.borrow_mut()[id.0] = Some(v);
        v
    }

    /// The current value of the parameter `id` (without putting it on the tape).
    pub fn param_value(&self, id: ParamId) -> Tensor<T> {
        self.values.borrow()[id.0].clone()
    }

    /// Replaces the value of the parameter `id` by `f(value)` before it is used (the change is
    /// kept in the store by [`Ctx::finish`]). **Panics** if the parameter is already on the
    /// tape.
    #[track_caller]
    pub fn update_param(&self, id: ParamId, f: impl FnOnce(&Tensor<T>) -> Tensor<T>) {
        assert!(
            self.vars.borrow()[id.0].is_none(),
            "Ctx::update_param: '{}' is already on the tape; update it before its first use",
            self.names[id.0]
        );
        let new = f(&self.values.borrow()[id.0]);
        self.values.borrow_mut()[id.0] = new;
        self.updated.borrow_mut()[id.0] = true;
    }

    pub fn buffer(&self, id: BufferId) -> Tensor<T> {
        self.buffers.borrow()[id.0].clone()
    }

    /// Sets the buffer `id` (kept in the store by [`Ctx::finish`]).
    pub fn set_buffer(&self, id: BufferId, value: Tensor<T>) {
        self.buffers.borrow_mut()[id.0] = value;
    }

    /// The context's random stream (Dropout masks).
    pub fn rng(&self) -> std::cell::RefMut<'_, Rng> {
        self.rng.borrow_mut()
    }

    /// The gradients of the parameters, aligned with the store (`None` for a parameter that
    /// was not used or got no gradient).
    pub fn grads(&self, grads: &Grads<T>) -> Vec<Option<Tensor<T>>> {
        self.vars.borrow().iter().map(|v| v.as_ref().and_then(|v| grads.get(v).cloned())).collect()
    }

    /// The variables of the parameters used so far (for custom losses on them).
    pub fn used_params(&self) -> Vec<(String, Var<'t, T>)> {
        self.vars.borrow().iter().zip(&self.names).filter_map(|(v, n)| v.map(|v| (n.clone(), v))).collect()
    }

    /// Writes the buffers and the parameters changed by [`Ctx::update_param`] back into
    /// `store` (the store the context was bound from).
    pub fn finish(self, store: &mut Store<T>) {
        assert_eq!(store.buffers.len(), self.buffers.borrow().len(), "Ctx::finish: a different store");
        for ((_, slot), v) in store.buffers.iter_mut().zip(self.buffers.into_inner()) {
            *slot = v;
        }
        for (i, (changed, v)) in self.updated.into_inner().into_iter().zip(self.values.into_inner()).enumerate() {
            if changed {
                store.params[i].1 = v;
            }
        }
    }
}

/// Checks the gradients of `layer`'s output with respect to its input `x` and every
/// parameter of `store` against central differences in f64 (`autograd::check`), in `mode`
/// with the context seeded by `seed` (the same Dropout mask in every evaluation). The input
/// is the first checked tensor, the parameters follow in the store's order.
///
/// # Errors
/// Those of [`autograd::check::check_gradients`]; a forward error is returned as
/// `autograd::Error::Check` naming it.
pub fn check_layer<L: Layer<f64>>(
    layer: &L,
    store: &Store<f64>,
    x: &Tensor<f64>,
    mode: Mode,
    opts: &autograd::check::CheckOptions,
) -> autograd::Result<autograd::check::GradReport> {
    let mut inputs = vec![x.clone()];
    inputs.extend(store.params.iter().map(|(_, t)| t.clone()));
    let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let report = autograd::check::check_gradients(
        |tape, v| {
            let cx = store.bind_vars(tape, &v[1..], mode, 7);
            match layer.forward(&cx, &v[0]) {
                Ok(y) => y,
                Err(e) => {
                    *failed.lock().unwrap() = Some(e.to_string());
                    v[0].sum_all()
                }
            }
        },
        &inputs,
        opts,
    )?;
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(autograd::Error::Check { msg: format!("check_layer: the forward failed: {e}") });
    }
    Ok(report)
}

/// Initial values: PyTorch's defaults and the usual alternatives.
pub mod init {
    use engine::{Element, Rng, Tensor};

    /// PyTorch's default for `Linear` and `Conv2d` weights and biases: uniform in
    /// `[−1/√fan_in, 1/√fan_in]` (what `kaiming_uniform_(a = √5)` reduces to).
    pub fn uniform_fan_in<T: Element>(shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor<T> {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        Tensor::rand_uniform(shape, -bound, bound, rng)
    }

    /// Kaiming (He) normal for ReLU networks: `N(0, 2/fan_in)` (`kaiming_normal_`, fan-in mode).
    pub fn kaiming_normal<T: Element>(shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor<T> {
        let std = (2.0 / fan_in.max(1) as f64).sqrt();
        Tensor::<T>::randn(shape, rng).mul_scalar(std)
    }

    /// Xavier (Glorot) uniform: `U(−a, a)`, `a = √(6 / (fan_in + fan_out))`.
    pub fn xavier_uniform<T: Element>(shape: &[usize], fan_in: usize, fan_out: usize, rng: &mut Rng) -> Tensor<T> {
        let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
        Tensor::rand_uniform(shape, -a, a, rng)
    }

    /// A dictionary of random unit-norm atoms: Gaussian entries, each atom (the slice over
    /// `atom_axes`) divided by its ℓ2 norm.
    pub fn unit_atoms<T: Element>(shape: &[usize], atom_axes: &[usize], rng: &mut Rng) -> Tensor<T> {
        let d = Tensor::<T>::randn(shape, rng);
        let n = d.norm_l2(atom_axes, true).map(|v| if v > T::zero() { v } else { T::one() });
        d.div(&n)
    }
}

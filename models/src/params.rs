//! A named list of parameter tensors, bound to a tape as leaves for each step.

use autograd::optim::Optimizer;
use autograd::{Grads, Tape, Var};
use engine::{Element, Rng, Tensor};

/// Parameters of a network, in a fixed order (the optimiser's state lines up with it).
#[derive(Clone, Debug, Default)]
pub struct ParamSet<T: Element> {
    names: Vec<String>,
    values: Vec<Tensor<T>>,
}

impl<T: Element> ParamSet<T> {
    pub fn new() -> Self {
        ParamSet { names: vec![], values: vec![] }
    }

    /// Adds a parameter and returns its index. **Panics** if the name is already used.
    #[track_caller]
    pub fn add(&mut self, name: &str, value: Tensor<T>) -> usize {
        assert!(!self.names.iter().any(|n| n == name), "ParamSet::add: parameter '{name}' already exists");
        self.names.push(name.to_string());
        self.values.push(value.contiguous());
        self.values.len() - 1
    }

    /// Every parameter as a leaf of `tape`, in order.
    pub fn bind<'t>(&self, tape: &'t Tape<T>) -> Vec<Var<'t, T>> {
        self.names.iter().zip(&self.values).map(|(n, v)| tape.leaf_named(v.clone(), n)).collect()
    }

    /// The gradients of the bound leaves `vars`, in order (`None` where none reached a leaf).
    pub fn grads(&self, grads: &Grads<T>, vars: &[Var<'_, T>]) -> Vec<Option<Tensor<T>>> {
        vars.iter().map(|v| grads.get(v).cloned()).collect()
    }

    /// One optimiser step on every parameter, with their names, so post-steps attached by name
    /// (`Sgd::with_post_step("csf1.dictionary", UnitNormAtoms { .. })`) find theirs.
    /// **Panics** as [`Optimizer::step_named`].
    #[track_caller]
    pub fn step(&mut self, opt: &mut impl Optimizer<T>, grads: &[Option<Tensor<T>>]) {
        let names = self.names.clone();
        opt.step_named(&names, &mut self.values.iter_mut().collect::<Vec<_>>(), grads);
    }

    pub fn values(&self) -> &[Tensor<T>] {
        &self.values
    }

    pub fn values_mut(&mut self) -> Vec<&mut Tensor<T>> {
        self.values.iter_mut().collect()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn get(&self, i: usize) -> &Tensor<T> {
        &self.values[i]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.values.iter().map(|v| v.numel()).sum()
    }
}

/// PyTorch's default initialisation of `Linear` and `Conv2d` weights and biases:
/// uniform in `[−1/√fan_in, 1/√fan_in]` (what `kaiming_uniform_(a = √5)` reduces to).
pub fn uniform_fan_in<T: Element>(shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor<T> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, rng)
}

//! Gradient checking as a library feature: compare the tape's gradients with central
//! differences in `f64`, element by element, for every input.
//!
//! For a function `f` of inputs `x₁ … x_k` the checker differentiates the scalar
//! `φ = Σ R ⊙ f(x)`, where `R = 1` when `f` returns one element and otherwise a fixed random
//! cotangent (seeded, so every run checks the same `φ`). For every checked element `i` of
//! every input it compares the analytic `∂φ/∂x_i` from one `backward` with
//! `(φ(x + ε·e_i) − φ(x − ε·e_i)) / 2ε`, and passes when
//! `|analytic − numeric| ≤ atol + rtol·|numeric|`.
//!
//! Non-contiguous inputs keep their layout when perturbed (the copy has the same strides), so
//! an op can be checked on transposed or sliced views. Inputs with aliased elements (stride 0)
//! are made contiguous first; to check broadcasting, broadcast inside `f`.

use std::fmt;
use std::sync::Arc;

use engine::{Rng, Tensor};

use crate::anomaly::unravel;
use crate::error::{Error, Result};
use crate::sweep::BackwardOptions;
use crate::tape::{Tape, Var};

/// Options of [`check_gradients`] and [`jacobian`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOptions {
    /// Central-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric derivative).
    pub rtol: f64,
    /// Indices of the inputs to check (`None`: all of them). Unchecked inputs are constants.
    pub wrt: Option<Vec<usize>>,
    /// Check at most this many elements per input (a seeded sample); `None`: all.
    pub max_elements: Option<usize>,
    /// Seed of the cotangent `R` and of the element sample.
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { eps: 1e-6, atol: 1e-7, rtol: 1e-5, wrt: None, max_elements: None, seed: 0x5eed }
    }
}

impl CheckOptions {
    pub fn eps(self, eps: f64) -> Self {
        CheckOptions { eps, ..self }
    }
    pub fn atol(self, atol: f64) -> Self {
        CheckOptions { atol, ..self }
    }
    pub fn rtol(self, rtol: f64) -> Self {
        CheckOptions { rtol, ..self }
    }
    pub fn wrt(self, inputs: &[usize]) -> Self {
        CheckOptions { wrt: Some(inputs.to_vec()), ..self }
    }
    pub fn max_elements(self, n: usize) -> Self {
        CheckOptions { max_elements: Some(n), ..self }
    }
    pub fn seed(self, seed: u64) -> Self {
        CheckOptions { seed, ..self }
    }
}

/// The worst element of one input: the one furthest outside (or closest to) the tolerance.
#[derive(Clone, Debug, PartialEq)]
pub struct Worst {
    pub index: Vec<usize>,
    pub analytic: f64,
    pub numeric: f64,
}

/// The result for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputReport {
    /// Position of the input in the `inputs` slice.
    pub input: usize,
    pub shape: Vec<usize>,
    /// Number of elements compared.
    pub checked: usize,
    pub max_abs_err: f64,
    /// Largest `|analytic − numeric| / |numeric|` over elements with a nonzero numeric value.
    pub max_rel_err: f64,
    pub worst: Option<Worst>,
    pub passed: bool,
}

/// The result of [`check_gradients`]: one [`InputReport`] per checked input.
#[derive(Clone, Debug, PartialEq)]
pub struct GradReport {
    pub output_shape: Vec<usize>,
    /// True when the output had several elements and was projected on a random cotangent.
    pub projected: bool,
    pub options: CheckOptions,
    pub inputs: Vec<InputReport>,
    /// The names of the ops the checked function recorded on its tape
    /// ([`Tape::recorded_ops`]).
    pub recorded: Vec<String>,
}

impl GradReport {
    /// True when every checked element of every input is within tolerance.
    pub fn passed(&self) -> bool {
        self.inputs.iter().all(|r| r.passed)
    }
    /// Largest absolute error over all inputs.
    pub fn max_abs_err(&self) -> f64 {
        self.inputs.iter().map(|r| r.max_abs_err).fold(0.0, f64::max)
    }
    /// Largest relative error over all inputs.
    pub fn max_rel_err(&self) -> f64 {
        self.inputs.iter().map(|r| r.max_rel_err).fold(0.0, f64::max)
    }
}

impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gradient check ({}; output {:?}{}; eps {:e}, atol {:e}, rtol {:e})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.output_shape,
            if self.projected { " projected on a random cotangent" } else { "" },
            self.options.eps,
            self.options.atol,
            self.options.rtol
        )?;
        for r in &self.inputs {
            write!(
                f,
                "  input {} {:?}: {} elements, max abs err {:.3e}, max rel err {:.3e} {}",
                r.input,
                r.shape,
                r.checked,
                r.max_abs_err,
                r.max_rel_err,
                if r.passed { "ok" } else { "FAIL" }
            )?;
            if let Some(w) = &r.worst {
                write!(f, "; worst at {:?}: analytic {:.12e}, numeric {:.12e}", w.index, w.analytic, w.numeric)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The input as the checker uses it: aliased layouts are made contiguous.
fn prepare(t: &Tensor<f64>) -> Tensor<f64> {
    if t.layout().has_aliasing() {
        t.contiguous()
    } else {
        t.clone()
    }
}

/// `t` with its logical element `i` changed by `delta`, in the same layout.
fn perturbed(t: &Tensor<f64>, i: usize, delta: f64) -> Tensor<f64> {
    let mut storage = t.storage().to_vec();
    let off = t.layout().offset_of(&unravel(i, t.shape()));
    storage[off] += delta;
    Tensor::from_storage(Arc::new(storage), t.layout().clone())
}

/// The function being checked, as a trait object: the checker is compiled once, not once per
/// closure (the audit registry has hundreds of them).
pub type CheckedFn<'a> = dyn for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64> + Sync + 'a;

/// `φ(inputs) = Σ R ⊙ f(inputs)` evaluated without recording gradients.
fn objective(f: &CheckedFn<'_>, inputs: &[Tensor<f64>], r: Option<&[f64]>) -> f64 {
    let tape = Tape::new();
    let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.constant(t.clone())).collect();
    let y = tape.no_grad(|| f(&tape, &vars)).value().to_vec();
    match r {
        None => y.iter().sum(),
        Some(r) => y.iter().zip(r).map(|(a, b)| a * b).sum(),
    }
}

/// Compares the tape's gradient of `f` with central differences for every checked input.
/// See the module docs for the definition. Runs the numeric evaluations in parallel, so `f`
/// must be `Sync`.
///
/// # Errors
/// `Error::Check` for invalid options (non-positive `eps`, an index in `wrt` out of range);
/// any error of the backward pass itself (e.g. a missing rule).
pub fn check_gradients<F>(f: F, inputs: &[Tensor<f64>], opts: &CheckOptions) -> Result<GradReport>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64> + Sync,
{
    check_gradients_dyn(&f, inputs, opts)
}

/// [`check_gradients`] on a trait object.
pub fn check_gradients_dyn(f: &CheckedFn<'_>, inputs: &[Tensor<f64>], opts: &CheckOptions) -> Result<GradReport> {
    if !(opts.eps > 0.0 && opts.eps.is_finite()) {
        return Err(Error::Check { msg: format!("eps must be positive, got {}", opts.eps) });
    }
    let wrt: Vec<usize> = opts.wrt.clone().unwrap_or_else(|| (0..inputs.len()).collect());
    if let Some(&bad) = wrt.iter().find(|&&i| i >= inputs.len()) {
        return Err(Error::Check { msg: format!("wrt index {bad} out of range for {} inputs", inputs.len()) });
    }
    let inputs: Vec<Tensor<f64>> = inputs.iter().map(prepare).collect();

    // Analytic gradients.
    let tape = Tape::new();
    let vars: Vec<Var<'_, f64>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| if wrt.contains(&i) { tape.leaf(t.clone()) } else { tape.constant(t.clone()) })
        .collect();
    let out = f(&tape, &vars);
    let recorded = tape.recorded_ops();
    let out_shape = out.shape();
    let n_out: usize = out_shape.iter().product();
    let projected = n_out != 1;
    let r: Option<Vec<f64>> = projected.then(|| {
        let mut rng = Rng::new(opts.seed ^ 0xC0DE);
        (0..n_out).map(|_| rng.normal()).collect()
    });
    let seed = r.as_ref().map(|r| Tensor::from_vec(r.clone(), &out_shape));
    let grads = tape.backward_with(&out, seed, BackwardOptions::default())?;

    let mut reports = Vec::new();
    for &k in &wrt {
        let x = &inputs[k];
        let analytic = grads.wrt(&vars[k]).to_vec();
        let n = x.numel();
        let mut elems: Vec<usize> = (0..n).collect();
        if let Some(m) = opts.max_elements {
            if m < n {
                let mut rng = Rng::stream(opts.seed, k as u64);
                rng.shuffle(&mut elems);
                elems.truncate(m);
                elems.sort_unstable();
            }
        }
        let numeric: Vec<f64> = engine::par::map(elems.len(), &|j| {
            let i = elems[j];
            let mut plus = inputs.clone();
            plus[k] = perturbed(x, i, opts.eps);
            let mut minus = inputs.clone();
            minus[k] = perturbed(x, i, -opts.eps);
            (objective(f, &plus, r.as_deref()) - objective(f, &minus, r.as_deref())) / (2.0 * opts.eps)
        });
        let mut rep = InputReport {
            input: k,
            shape: x.shape().to_vec(),
            checked: elems.len(),
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            worst: None,
            passed: true,
        };
        let mut worst_ratio = -1.0;
        for (&i, &num) in elems.iter().zip(&numeric) {
            let ana = analytic[i];
            let err = (ana - num).abs();
            let err = if err.is_nan() { f64::INFINITY } else { err };
            rep.max_abs_err = rep.max_abs_err.max(err);
            if num != 0.0 {
                rep.max_rel_err = rep.max_rel_err.max(err / num.abs());
            } else if err > 0.0 {
                rep.max_rel_err = f64::INFINITY;
            }
            let tol = opts.atol + opts.rtol * num.abs();
            let ratio = if tol > 0.0 { err / tol } else { err };
            if err > tol {
                rep.passed = false;
            }
            if ratio > worst_ratio {
                worst_ratio = ratio;
                rep.worst = Some(Worst { index: unravel(i, x.shape()), analytic: ana, numeric: num });
            }
        }
        reports.push(rep);
    }
    Ok(GradReport { output_shape: out_shape, projected, options: opts.clone(), inputs: reports, recorded })
}

/// Analytic and numeric Jacobians of a small function, for teaching and auditing.
#[derive(Clone, Debug)]
pub struct Jacobian {
    /// `[outputs, inputs]`: row `r` is the gradient of output element `r` with respect to all
    /// input elements (inputs concatenated in order, each row-major).
    pub analytic: Tensor<f64>,
    /// The same by central differences, column by column.
    pub numeric: Tensor<f64>,
    pub max_abs_err: f64,
}

impl fmt::Display for Jacobian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Jacobian {:?}, max abs err {:.3e}", self.analytic.shape(), self.max_abs_err)?;
        let (m, n) = (self.analytic.dim(0), self.analytic.dim(1));
        for (title, t) in
            [("analytic (row by row, backward)", &self.analytic), ("numeric (central differences)", &self.numeric)]
        {
            writeln!(f, "{title}:")?;
            for i in 0..m {
                let row: Vec<String> = (0..n).map(|j| format!("{:>11.6}", t.get(&[i, j]))).collect();
                writeln!(f, "  [{}]", row.join(" "))?;
            }
        }
        Ok(())
    }
}

/// The full Jacobian of `f` at `inputs`, analytic (one backward per output element, with a
/// one-hot output gradient) and numeric (one pair of evaluations per input element).
pub fn jacobian<F>(f: F, inputs: &[Tensor<f64>], eps: f64) -> Result<Jacobian>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64> + Sync,
{
    jacobian_dyn(&f, inputs, eps)
}

/// [`jacobian`] on a trait object.
pub fn jacobian_dyn(f: &CheckedFn<'_>, inputs: &[Tensor<f64>], eps: f64) -> Result<Jacobian> {
    let inputs: Vec<Tensor<f64>> = inputs.iter().map(prepare).collect();
    let n_in: usize = inputs.iter().map(|t| t.numel()).sum();
    let out_shape = {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.constant(t.clone())).collect();
        f(&tape, &vars).shape()
    };
    let n_out: usize = out_shape.iter().product();
    let mut analytic = vec![0.0; n_out * n_in];
    for r in 0..n_out {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        let out = f(&tape, &vars);
        let mut seed = vec![0.0; n_out];
        seed[r] = 1.0;
        let grads = tape.backward_with(&out, Some(Tensor::from_vec(seed, &out_shape)), BackwardOptions::default())?;
        let row: Vec<f64> = vars.iter().flat_map(|v| grads.wrt(v).to_vec()).collect();
        analytic[r * n_in..(r + 1) * n_in].copy_from_slice(&row);
    }
    let mut numeric = vec![0.0; n_out * n_in];
    let mut col = 0;
    for k in 0..inputs.len() {
        for i in 0..inputs[k].numel() {
            let eval = |delta: f64| {
                let mut xs = inputs.clone();
                xs[k] = perturbed(&inputs[k], i, delta);
                let tape = Tape::new();
                let vars: Vec<Var<'_, f64>> = xs.iter().map(|t| tape.constant(t.clone())).collect();
                f(&tape, &vars).value().to_vec()
            };
            let (p, m) = (eval(eps), eval(-eps));
            for r in 0..n_out {
                numeric[r * n_in + col] = (p[r] - m[r]) / (2.0 * eps);
            }
            col += 1;
        }
    }
    let max_abs_err = analytic.iter().zip(&numeric).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    Ok(Jacobian {
        analytic: Tensor::from_vec(analytic, &[n_out, n_in]),
        numeric: Tensor::from_vec(numeric, &[n_out, n_in]),
        max_abs_err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_on_a_correct_composite() {
        let x = Tensor::<f64>::from_vec(vec![0.3, -1.2, 0.7, 2.0, -0.4, 1.1], &[2, 3]);
        let report =
            check_gradients(|_, v| v[0].tanh().mul(&v[0]).sum(&[1], false), &[x.t()], &CheckOptions::default())
                .unwrap();
        assert!(report.passed(), "{report}");
        assert!(report.projected);
        assert_eq!(report.inputs[0].checked, 6);
    }

    #[test]
    fn jacobian_of_elementwise_square_is_diagonal() {
        // y = x², J = diag(2x)
        let j = jacobian(|_, v| v[0].square(), &[Tensor::from([1.0, -3.0])], 1e-6).unwrap();
        assert_eq!(j.analytic.to_vec(), vec![2.0, 0.0, 0.0, -6.0]);
        assert!(j.max_abs_err < 1e-8, "{j}");
    }
}

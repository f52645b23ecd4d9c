//! Inference without a tape's memory: running a forward written on [`Var`] so that nothing is
//! recorded and intermediate values are freed once nothing uses them.
//!
//! # Design
//!
//! A forward is written once, on `&Var`, and serves both training and evaluation: the same
//! code runs on a recording [`Tape`] (for `backward`) and on an inference tape
//! ([`Tape::inference`]). On an inference tape nothing requires a gradient (leaves included),
//! so every op result is a constant that keeps neither its rule nor the ids of its inputs,
//! and its value is bit for bit what the recording tape computes (the same forward code runs).
//!
//! [`Var`] is a `Copy` handle (a node id and the tape), so the tape cannot learn from `Drop`
//! when a value is dead. Liveness is instead declared by the code that knows it, in two ways:
//!
//! * [`Tape::scope`]`(f)` runs `f` and then frees the value of every node created inside it
//!   except the ones `f` returns (anything implementing [`Retain`]: a `Var`, tuples, `Vec`s,
//!   `Option`s and `Result`s of them, layer outputs that implement it). Scopes nest.
//! * [`Tape::release`]`(&v)` frees one value the caller knows is dead (an iterate replaced by
//!   the next one: a loop cannot scope a value that outlives one iteration).
//!
//! Reading a freed value (through any accessor: `value`, `shape`, an op taking it) panics
//! with a message naming the node and saying an inference scope freed it; the node itself
//! (a few dozen bytes) stays, so ids are never reused and a stale handle can never alias a
//! newer value. [`Var::is_live`] tells whether a value is still there.
//!
//! The same calls are safe on a recording tape: there a value is freed only when no recorded
//! rule needs it, i.e. the node does not require a gradient and is not an input of an op
//! that does. Under [`Tape::no_grad`] that is every intermediate, so `no_grad` evaluations
//! through layers that scope their iterations (DCEA, the unrolled CSC, …) no longer keep
//! every iterate; with gradients on, only the constant side-branches are freed.
//!
//! The layers of the `sparse` crate scope their own iterations, so their peak memory is a few
//! iterates, whichever tape they run on; the caller scopes the rest (or uses [`infer`], which
//! makes the tape and returns the output as a [`Tensor`]).
//!
//! Not provided: a `truncate` of the tape's node list. Dropping nodes would make ids reusable,
//! and a stale `Copy` handle would then silently read a newer value; the freed nodes cost a
//! few dozen bytes each, and [`infer`] drops the whole tape when it returns.
//!
//! ```
//! use sparsegrad_autograd::{infer, Tape, Var};
//! use engine::Tensor;
//! // One forward, written once on Var.
//! fn net<'t>(w: &Var<'t, f64>, x: &Var<'t, f64>) -> Var<'t, f64> {
//!     x.matmul(w).relu().sum_all()
//! }
//! let (w, x) = (Tensor::from_vec(vec![1.0, -1.0, 2.0, 0.5], &[2, 2]), Tensor::from_vec(vec![1.0, 2.0], &[1, 2]));
//! // Training: recorded, differentiable.
//! let tape = Tape::new();
//! let (wv, xv) = (tape.leaf(w.clone()), tape.constant(x.clone()));
//! let loss = net(&wv, &xv);
//! assert!(tape.backward(&loss).is_ok());
//! // Evaluation: nothing recorded, same bits, plain tensors in and out.
//! let y = infer(|t| net(&t.constant(w.clone()), &t.constant(x.clone())));
//! assert_eq!(y.to_vec(), loss.value().to_vec());
//! ```

use engine::{Element, Tensor};

use crate::tape::{NodeId, Tape, Var};

/// What a [`Tape::scope`] returns: the nodes it keeps alive.
///
/// Implemented for [`Var`], references, `Option`, `Result` (the `Ok` side), `Vec`, arrays,
/// slices and tuples of such, and for plain values that hold no variable (`()`, numbers,
/// `bool`, `String`, [`Tensor`]). A layer's output struct implements it by listing its
/// variables.
pub trait Retain {
    /// Appends the ids of the nodes to keep.
    fn retained(&self, ids: &mut Vec<NodeId>);
}

impl<T: Element> Retain for Var<'_, T> {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        ids.push(self.id());
    }
}

impl<R: Retain + ?Sized> Retain for &R {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        (**self).retained(ids)
    }
}

impl<R: Retain> Retain for Option<R> {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        if let Some(r) = self {
            r.retained(ids)
        }
    }
}

impl<R: Retain, E> Retain for Result<R, E> {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        if let Ok(r) = self {
            r.retained(ids)
        }
    }
}

impl<R: Retain> Retain for [R] {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        self.iter().for_each(|r| r.retained(ids))
    }
}

impl<R: Retain> Retain for Vec<R> {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        self.iter().for_each(|r| r.retained(ids))
    }
}

impl<R: Retain, const N: usize> Retain for [R; N] {
    fn retained(&self, ids: &mut Vec<NodeId>) {
        self.iter().for_each(|r| r.retained(ids))
    }
}

macro_rules! retain_nothing {
    ($($t:ty),*) => {$(
        impl Retain for $t {
            fn retained(&self, _: &mut Vec<NodeId>) {}
        }
    )*};
}
retain_nothing!((), bool, usize, u32, u64, i32, i64, f32, f64, String);

impl<T: Element> Retain for Tensor<T> {
    fn retained(&self, _: &mut Vec<NodeId>) {}
}

macro_rules! retain_tuple {
    ($($n:tt $t:ident),*) => {
        impl<$($t: Retain),*> Retain for ($($t,)*) {
            fn retained(&self, ids: &mut Vec<NodeId>) {
                $(self.$n.retained(ids);)*
            }
        }
    };
}
retain_tuple!(0 A);
retain_tuple!(0 A, 1 B);
retain_tuple!(0 A, 1 B, 2 C);
retain_tuple!(0 A, 1 B, 2 C, 3 D);
retain_tuple!(0 A, 1 B, 2 C, 3 D, 4 E);

impl<T: Element> Tape<T> {
    /// Runs `f`, then frees the value of every node created inside it that `f`'s result does
    /// not retain ([`Retain`]) and that no recorded rule needs (on an inference tape: every
    /// one). Any later use of a freed node panics, naming it. See the [module
    /// docs](mod@crate::infer).
    ///
    /// ```
    /// use sparsegrad_autograd::Tape;
    /// use engine::Tensor;
    /// let tape = Tape::<f32>::inference();
    /// let x = tape.constant(Tensor::from([1.0, 2.0]));
    /// let mut inner = None;
    /// let y = tape.scope(|| {
    ///     let h = x.mul_scalar(3.0);
    ///     inner = Some(h);
    ///     h.sum_all()
    /// });
    /// assert_eq!(y.item(), 9.0);
    /// assert!(x.is_live() && !inner.unwrap().is_live());
    /// ```
    pub fn scope<R: Retain>(&self, f: impl FnOnce() -> R) -> R {
        let start = self.len();
        let r = f();
        let mut keep = Vec::new();
        r.retained(&mut keep);
        let mut nodes = self.nodes.borrow_mut();
        let end = nodes.len();
        for (id, n) in nodes.iter_mut().enumerate().take(end).skip(start) {
            if !keep.contains(&id) && (self.inference || !(n.requires_grad || n.needed)) {
                n.value = None;
            }
        }
        r
    }

    /// Frees the value of `v` now, if no recorded rule needs it (on an inference tape:
    /// always), for a value the caller knows is dead. Returns whether it was freed. Any later
    /// use of it panics, naming it.
    ///
    /// ```
    /// use sparsegrad_autograd::Tape;
    /// use engine::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let w = tape.leaf(Tensor::from([1.0]));
    /// let c = tape.constant(Tensor::from([2.0]));
    /// let y = w.mul(&c);
    /// assert!(!tape.release(&c)); // y's rule needs c
    /// let d = tape.no_grad(|| c.mul_scalar(2.0));
    /// assert!(tape.release(&d));
    /// ```
    pub fn release(&self, v: &Var<'_, T>) -> bool {
        let mut nodes = self.nodes.borrow_mut();
        let n = &mut nodes[v.id()];
        if self.inference || !(n.requires_grad || n.needed) {
            n.value = None;
            true
        } else {
            false
        }
    }
}

/// Runs a forward on a fresh inference tape ([`Tape::inference`]) inside a scope and returns
/// its output's value: weights and data in as tensors (`tape.constant`), a tensor out, no
/// tape to keep.
///
/// ```
/// use sparsegrad_autograd::infer;
/// use engine::Tensor;
/// let x = Tensor::from([-1.0f32, 2.0]);
/// let y = infer(|t| t.constant(x.clone()).relu().exp());
/// assert_eq!(y.to_vec(), vec![1.0, 2f32.exp()]);
/// ```
pub fn infer<T: Element, F>(f: F) -> Tensor<T>
where
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    let tape = Tape::inference();
    let out = tape.scope(|| f(&tape));
    out.value()
}

/// [`infer`] for a forward that can fail (a sparse layer's solver): its error, or the output
/// as a tensor.
///
/// ```
/// use sparsegrad_autograd::try_infer;
/// use engine::Tensor;
/// let y: Result<Tensor<f64>, String> = try_infer(|t| Ok(t.constant(Tensor::from([4.0])).sqrt()));
/// assert_eq!(y.unwrap().to_vec(), vec![2.0]);
/// ```
pub fn try_infer<T: Element, E, F>(f: F) -> Result<Tensor<T>, E>
where
    F: for<'t> FnOnce(&'t Tape<T>) -> Result<Var<'t, T>, E>,
{
    let tape = Tape::inference();
    let out = tape.scope(|| f(&tape))?;
    Ok(out.value())
}

//! Linear, ReLU, Flatten, Dropout, and the containers: Sequential and the residual block.

use autograd::Var;
use engine::{Element, Tensor};

use super::{init, Ctx, Error, Layer, ParamBuilder, ParamId, Result};

/// `y = x·Wᵀ + b`. Shapes: `x [N, in] → [N, out]`. Parameters `{prefix}.weight [out, in]`,
/// `{prefix}.bias [out]`, initialised as PyTorch's `nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: ParamId,
    pub b: Option<ParamId>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    pub fn new<T: Element>(pb: &mut ParamBuilder<'_, T>, in_features: usize, out_features: usize, bias: bool) -> Self {
        let w = init::uniform_fan_in(&[out_features, in_features], in_features, pb.rng());
        let w = pb.param("weight", w);
        let b = bias.then(|| {
            let b = init::uniform_fan_in(&[out_features], in_features, pb.rng());
            pb.param("bias", b)
        });
        Linear { w, b, in_features, out_features }
    }
}

impl<T: Element> Layer<T> for Linear {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        if s.len() != 2 || s[1] != self.in_features {
            return Err(Error::Shape(format!(
                "Linear({} → {}): expected an input [N, {}], got {s:?}",
                self.in_features, self.out_features, self.in_features
            )));
        }
        let y = x.matmul(&cx.param(self.w).t());
        Ok(match self.b {
            Some(b) => y.add(&cx.param(b)),
            None => y,
        })
    }
}

/// `max(x, 0)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl<T: Element> Layer<T> for Relu {
    fn forward<'t>(&self, _cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        Ok(x.relu())
    }
}

/// `[N, d1, d2, …] → [N, d1·d2·…]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl<T: Element> Layer<T> for Flatten {
    fn forward<'t>(&self, _cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        if s.is_empty() {
            return Err(Error::Shape("Flatten: the input is a scalar".into()));
        }
        let rest: usize = s[1..].iter().product();
        Ok(x.reshape(&[s[0], rest]))
    }
}

/// Inverted dropout (PyTorch's): in train mode each entry is zeroed with probability `p`
/// and the rest scaled by `1/(1−p)`; the identity in eval mode. The mask comes from the
/// context's random stream, so a step is reproducible from its seed.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    pub p: f64,
}

impl Dropout {
    /// **Panics** unless `0 ≤ p < 1`.
    #[track_caller]
    pub fn new(p: f64) -> Self {
        assert!((0.0..1.0).contains(&p), "Dropout: p must be in [0, 1), got {p}");
        Dropout { p }
    }
}

impl<T: Element> Layer<T> for Dropout {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        if !cx.training() || self.p == 0.0 {
            return Ok(*x);
        }
        let shape = x.shape();
        let n: usize = shape.iter().product();
        let keep = T::of(1.0 / (1.0 - self.p));
        let mut rng = cx.rng();
        let mask: Vec<T> = (0..n).map(|_| if rng.uniform() < self.p { T::zero() } else { keep }).collect();
        drop(rng);
        Ok(x.mul(&cx.tape().constant(Tensor::from_vec(mask, &shape))))
    }
}

/// Layers applied in order. Sub-layers are named by their index (`{prefix}.0`, `{prefix}.1`,
/// …) as `nn.Sequential` names them; layers without parameters still take an index.
#[derive(Default)]
pub struct Sequential<T: Element> {
    pub layers: Vec<Box<dyn Layer<T>>>,
}

impl<T: Element> Sequential<T> {
    pub fn new() -> Self {
        Sequential { layers: vec![] }
    }

    /// Appends a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    pub fn push(&mut self, layer: impl Layer<T> + 'static) {
        self.layers.push(Box::new(layer));
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Element> Layer<T> for Sequential<T> {
    /// Each layer runs in a [`Tape::scope`](autograd::Tape::scope), and the activation
    /// between two layers is released once the next layer has used it: on an inference tape
    /// (or a recording one without gradients) a forward holds one layer's values at a time,
    /// not the whole network's. With gradients nothing a rule needs is freed.
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = cx.tape();
        let mut h = *x;
        for (i, l) in self.layers.iter().enumerate() {
            let next = tape.scope(|| l.forward(cx, &h))?;
            // `h` is ours from the second layer on (the caller owns `x`); a layer that
            // returns its input (Dropout in eval mode) keeps it alive.
            if i > 0 && next.id() != h.id() {
                tape.release(&h);
            }
            h = next;
        }
        Ok(h)
    }
}

/// A residual connection: `post(body(x) + shortcut(x))`, with the identity where
/// `shortcut` is `None` and no activation where `post` is `None`. ResNet's basic block is
/// `Residual { body: conv-BN-ReLU-conv-BN, shortcut: 1×1 conv-BN when the shape changes,
/// post: ReLU }`.
pub struct Residual<T: Element> {
    pub body: Box<dyn Layer<T>>,
    pub shortcut: Option<Box<dyn Layer<T>>>,
    pub post: Option<Box<dyn Layer<T>>>,
}

impl<T: Element> Layer<T> for Residual<T> {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let h = self.body.forward(cx, x)?;
        let s = match &self.shortcut {
            Some(l) => l.forward(cx, x)?,
            None => *x,
        };
        if h.shape() != s.shape() {
            return Err(Error::Shape(format!(
                "Residual: the body gives {:?} but the shortcut {:?}",
                h.shape(),
                s.shape()
            )));
        }
        let y = h.add(&s);
        match &self.post {
            Some(l) => l.forward(cx, &y),
            None => Ok(y),
        }
    }
}

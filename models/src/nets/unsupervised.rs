//! Networks with an unsupervised term: the SF/CSF LeNets (the reconstruction loss of their
//! sparse layers, docs/math.md §1), the DCEA (the negative log-likelihood of its observations,
//! docs/math.md §4) and the spatial-contrasting convnet (the SC loss on two patches of every
//! image, docs/math.md §5).
//!
//! The registry's [`super::build`] returns a `Box<dyn Layer<T>>` (the supervised forward);
//! a training loop that also needs the unsupervised term builds the same network, with the
//! same parameter names, through [`build_unsupervised`], whose `Box<dyn Unsupervised<T>>` has
//! both (and coerces to `Box<dyn Layer<T>>`). [`has_unsupervised`] says which names it takes.
//!
//! ```
//! use autograd::Tape;
//! use engine::{Rng, Tensor};
//! use sparsegrad_models::layers::{Mode, Store};
//! use sparsegrad_models::nets::{unsupervised::build_unsupervised, NetConfig};
//! let cfg = NetConfig::new("csf-lenet").unwrap();
//! let mut store = Store::<f64>::new();
//! let net = build_unsupervised(&cfg, &mut store.builder(&mut Rng::new(0))).unwrap();
//! let tape = Tape::new();
//! let cx = store.bind(&tape, Mode::Train, 0);
//! let x = tape.constant(Tensor::rand_uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut Rng::new(1)));
//! let lu = net.unsupervised_loss(&cx, &x).unwrap();
//! assert_eq!(lu.shape(), [] as [usize; 0]);
//! ```

use autograd::Var;
use engine::Element;

use super::{dcea, lenet, sc, NetConfig};
use crate::layers::{Ctx, Layer, ParamBuilder, Result};

/// A network with an unsupervised loss beside its forward.
pub trait Unsupervised<T: Element>: Layer<T> {
    /// The network's unsupervised term for the batch `x` (labelled or not), a scalar: what a
    /// training loop adds, times a weight, to the supervised loss (or minimises alone).
    fn unsupervised_loss<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>>;
    /// The same network as a plain layer (`{ self }` in every implementation: turning a
    /// `Box<dyn Unsupervised>` into a `Box<dyn Layer>` directly is trait upcasting, stable only
    /// from Rust 1.86, and the workspace's minimum is 1.85).
    fn into_layer(self: Box<Self>) -> Box<dyn Layer<T>>;
}

/// The names [`build_unsupervised`] builds.
pub const NAMES: &[&str] = &["sf-lenet", "csf-lenet", "csf-sf-lenet", "dcea", "sc-convnet"];

/// Whether the network `name` has an unsupervised term.
pub fn has_unsupervised(name: &str) -> bool {
    NAMES.contains(&name)
}

/// Builds the network of `config` (one of [`NAMES`]) with its unsupervised term, exactly as
/// [`super::build`] builds it (same parameters, names and initial values for the same
/// random stream).
pub fn build_unsupervised<T: Element>(
    config: &NetConfig,
    pb: &mut ParamBuilder<'_, T>,
) -> std::result::Result<Box<dyn Unsupervised<T>>, String> {
    Ok(match config.name.as_str() {
        "sf-lenet" => Box::new(lenet::build_sparse(lenet::Variant::Sf, config, pb)?),
        "csf-lenet" => Box::new(lenet::build_sparse(lenet::Variant::Csf, config, pb)?),
        "csf-sf-lenet" => Box::new(lenet::build_sparse(lenet::Variant::CsfSf, config, pb)?),
        "dcea" => Box::new(dcea::build(config, pb)?),
        "sc-convnet" => Box::new(sc::build(config, pb)?),
        other => {
            return Err(format!("network '{other}' has no unsupervised term (those that do: {})", NAMES.join(", ")))
        }
    })
}

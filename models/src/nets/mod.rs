//! The papers' networks, built from [`crate::layers`], and the registry the program and the
//! experiments build them from by name.
//!
//! A network's configuration ([`NetConfig`]) is plain data (a name and `key = value`
//! options) that goes into a checkpoint's metadata, so a checkpoint says how to rebuild the
//! network that reads it.

use std::collections::BTreeMap;
use std::fmt;

use autograd::{Tape, Var};
use engine::{Element, Rng, Tensor};

use crate::layers::{Ctx, Layer, Mode, ParamBuilder, Result, Store};

pub mod lenet;
pub mod nin;
pub mod resnet;
// The sparse-coding networks (issue 19 §1): `dcea`, `sc` (the spatial-contrasting convnet),
// the SF/CSF LeNets in `lenet`; `unsupervised` builds them with their unsupervised term
// (`build_unsupervised(config, pb) -> Box<dyn Unsupervised<T>>`, `unsupervised_loss(cx, x)`
// beside `forward`), for training loops that add it; `build` below gives the same network.
pub mod dcea;
pub mod sc;
pub mod unsupervised;

/// How to build a network: its registry name, the number of classes (or output channels),
/// the input's channels and size, and the network's own options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub name: String,
    pub classes: usize,
    /// `[C, H, W]` of one input.
    pub input: [usize; 3],
    /// Network-specific options (`lambda = 0.1`, `iters = 2`, …), as text.
    pub options: BTreeMap<String, String>,
}

impl NetConfig {
    /// The registry's default configuration of `name` (its paper's input size and classes).
    pub fn new(name: &str) -> std::result::Result<NetConfig, String> {
        let spec = find(name)?;
        Ok(NetConfig {
            name: spec.name.to_string(),
            classes: spec.classes,
            input: spec.input,
            options: BTreeMap::new(),
        })
    }

    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self
    }

    pub fn input(mut self, input: [usize; 3]) -> Self {
        self.input = input;
        self
    }

    pub fn option(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.options.insert(key.to_string(), value.to_string());
        self
    }

    /// The option `key` parsed as `V`, `default` when absent.
    pub fn get<V: std::str::FromStr>(&self, key: &str, default: V) -> std::result::Result<V, String> {
        match self.options.get(key) {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| format!("{}: invalid value '{s}' for option {key}", self.name)),
        }
    }

    /// The configuration as `key → value` text (a checkpoint's metadata).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("net".to_string(), self.name.clone());
        m.insert("classes".to_string(), self.classes.to_string());
        m.insert("input".to_string(), format!("{}x{}x{}", self.input[0], self.input[1], self.input[2]));
        for (k, v) in &self.options {
            m.insert(format!("net.{k}"), v.clone());
        }
        m
    }

    /// The inverse of [`NetConfig::to_map`]; an error names the missing or invalid key.
    pub fn from_map(m: &BTreeMap<String, String>) -> std::result::Result<NetConfig, String> {
        let get = |k: &str| m.get(k).ok_or_else(|| format!("the metadata has no '{k}'"));
        let name = get("net")?.clone();
        let classes = get("classes")?.parse().map_err(|_| format!("invalid 'classes': {}", m["classes"]))?;
        let dims: Vec<usize> = get("input")?.split('x').filter_map(|d| d.parse().ok()).collect();
        let input: [usize; 3] = dims.try_into().map_err(|_| format!("invalid 'input': {}", m["input"]))?;
        let options =
            m.iter().filter_map(|(k, v)| k.strip_prefix("net.").map(|k| (k.to_string(), v.clone()))).collect();
        Ok(NetConfig { name, classes, input, options })
    }
}

/// A network with its parameters: what the program trains, saves and evaluates.
pub struct Model<T: Element> {
    pub config: NetConfig,
    pub store: Store<T>,
    pub net: Box<dyn Layer<T>>,
}

impl<T: Element> Model<T> {
    /// Builds the network of `config` with initial values drawn from `rng`.
    pub fn new(config: &NetConfig, rng: &mut Rng) -> std::result::Result<Model<T>, String> {
        let mut store = Store::new();
        let net = build(config, &mut store.builder(rng))?;
        Ok(Model { config: config.clone(), store, net })
    }

    /// The forward of the network on a bound context.
    pub fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.net.forward(cx, x)
    }

    /// The output for `x` in eval mode, without gradients (buffers are not changed), on an
    /// inference tape ([`autograd::try_infer`]: nothing is recorded, intermediate values are
    /// dropped as soon as they are used). Its bits equal those of the recorded eval-mode
    /// forward.
    pub fn predict(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        autograd::try_infer(|tape: &Tape<T>| {
            let cx = self.store.bind(tape, Mode::Eval, 0);
            self.net.forward(&cx, &tape.constant(x.clone()))
        })
    }

    /// The network's unsupervised term, for the networks that have one
    /// ([`unsupervised::has_unsupervised`]); `None` for the others.
    ///
    /// The returned network is the same network rebuilt (by
    /// [`unsupervised::build_unsupervised`]) into a scratch store: its layers hold parameter
    /// and buffer *indices*, which equal this model's (checked by name), so on a context bound
    /// to `self.store` its forward and its `unsupervised_loss` read and train this model's
    /// parameters. This keeps `Model` as it is (no second handle to the same layers).
    pub fn unsupervised(&self) -> Option<std::result::Result<Box<dyn unsupervised::Unsupervised<T>>, String>> {
        if !unsupervised::has_unsupervised(&self.config.name) {
            return None;
        }
        let mut scratch = Store::new();
        let built = unsupervised::build_unsupervised(&self.config, &mut scratch.builder(&mut Rng::new(0)));
        Some(built.and_then(|net| {
            if scratch.names() != self.store.names() || scratch.buffer_names() != self.store.buffer_names() {
                return Err(format!("{}: the rebuilt network's parameters differ from the model's", self.config.name));
            }
            Ok(net)
        }))
    }
}

/// A registered network.
pub struct NetSpec {
    pub name: &'static str,
    /// One line: the paper and the layout.
    pub about: &'static str,
    pub classes: usize,
    pub input: [usize; 3],
}

/// Builds the layers of the network `config.name` into the builder's store.
pub fn build<T: Element>(
    config: &NetConfig,
    pb: &mut ParamBuilder<'_, T>,
) -> std::result::Result<Box<dyn Layer<T>>, String> {
    Ok(match config.name.as_str() {
        "lenet" => Box::new(lenet::build(config, pb)?),
        "nin" | "ds-nin" => Box::new(nin::build(config, pb)?),
        "resnet20" | "sdnet20" | "sdnet20-all" | "resnet18" | "sdnet18" | "sdnet18-all" => {
            Box::new(resnet::build(config, pb)?)
        }
        // The sparse-coding networks; unsupervised::build_unsupervised has their extra term.
        "sf-lenet" | "csf-lenet" | "csf-sf-lenet" | "dcea" | "sc-convnet" => {
            unsupervised::build_unsupervised(config, pb)?.into_layer()
        }
        other => return Err(find(other).err().unwrap_or_else(|| format!("network '{other}' has no builder"))),
    })
}

/// Every network, in the order `--model list` prints them.
pub fn registry() -> Vec<NetSpec> {
    let mut all = vec![
        lenet::spec(),
        // The sparse-coding networks (issue 19 §1).
        lenet::sf_spec(),
        lenet::csf_spec(),
        lenet::csf_sf_spec(),
    ];
    all.extend(nin::specs());
    all.extend(resnet::specs());
    all.push(dcea::spec());
    all.push(sc::spec());
    all
}

/// The network called `name`, or an error listing the names.
pub fn find(name: &str) -> std::result::Result<NetSpec, String> {
    let all = registry();
    let names: Vec<&str> = all.iter().map(|s| s.name).collect();
    let names = names.join(", ");
    all.into_iter().find(|s| s.name == name).ok_or_else(|| format!("unknown network '{name}' (known: {names})"))
}

//! CIFAR ResNets (He et al. 2016) and their SDNet variants (docs/math.md §2, `sdnet-csc-layer.txt`).
//!
//! * `resnet20`: conv 3×3 16, BN, ReLU; 3 stages × 3 basic blocks (16, 32, 64 channels, stride
//!   2 at the first block of stages 2 and 3 with a 1×1 conv + BN projection shortcut);
//!   global average pool; linear 64 → C. 272,474 parameters at C = 10.
//! * `sdnet20`: `resnet20` with the stem conv a CSC layer (16 atoms 3×3 over 3 channels,
//!   λ = 0.1, T = 2, non-negative, 0.9/L), then BN + ReLU — `ResNet20(csc_stem=True)` of
//!   `../shared/peers/networks.py`. Same count (the atoms replace the conv weights).
//! * `sdnet20-all`: every 3×3 conv (stem and both convs of every block, stride-2 ones included)
//!   a CSC layer; the 1×1 projections stay convolutions (docs/math.md: "SDNet-18-all").
//! * `resnet18`: the CIFAR ResNet-18 of the SDNet code (`Lib/models/resnet.py`): conv 3×3 64,
//!   BN, ReLU; 4 stages × 2 basic blocks (64, 128, 256, 512); linear 512 → C. 11,173,962
//!   parameters at C = 10.
//! * `sdnet18`: its stem conv a CSC layer 3 → 64 then BN — without the ReLU, as the authors'
//!   `Lib/models/sdnet.py` (their ReLU is commented out; option `stem_relu = true` adds it).
//!   `sdnet18-all`: every 3×3 conv a CSC layer, as `sdnet20-all`.
//!
//! Names follow networks.py's `ResNet20` for every depth: `stem.weight` (`stem.w` and the
//! buffer `stem.v` for a CSC stem), `bn.*`, `blocks.{i}.c1`, `.b1`, `.c2`, `.b2`,
//! `.sc.0` (1×1 conv), `.sc.1` (BN), `fc.*`; blocks are numbered across stages.
//!
//! Options (`NetConfig::option`) of the CSC layers: `lambda` (0.1), `stem_lambda` (the stem's
//! λ only; robust inference raises it at test time), `iters` (2), `prox` (`nonneg` or
//! `signed`), `step` (0.9: the step is `step/L`), `momentum` (`sdnet` or `bt`), `gradient`
//! (`unrolled` or `implicit`), `learn_lambda` (false: a `lam` parameter per CSC layer when
//! true), `stem_relu`.

use autograd::Var;
use engine::{Conv2dParams, Element};
use sparse::csc::{CscConfig, Gradient, Implicit};
use sparse::fista::{FistaConfig, Momentum, Prox};

use super::{NetConfig, NetSpec};
use crate::layers::{
    BatchNorm2d, Conv2d, CscLayer, Ctx, GlobalAvgPool, Layer, Linear, ParamBuilder, Relu, Residual, Result, Sequential,
};

/// Stages as `(width, blocks)`.
type Stages = &'static [(usize, usize)];

/// The networks of this file: `(name, stages, CSC stem, CSC everywhere)`.
const NETS: [(&str, Stages, bool, bool); 6] = [
    ("resnet20", &[(16, 3), (32, 3), (64, 3)], false, false),
    ("sdnet20", &[(16, 3), (32, 3), (64, 3)], true, false),
    ("sdnet20-all", &[(16, 3), (32, 3), (64, 3)], true, true),
    ("resnet18", &[(64, 2), (128, 2), (256, 2), (512, 2)], false, false),
    ("sdnet18", &[(64, 2), (128, 2), (256, 2), (512, 2)], true, false),
    ("sdnet18-all", &[(64, 2), (128, 2), (256, 2), (512, 2)], true, true),
];

pub fn specs() -> Vec<NetSpec> {
    let about = |n: &str| -> &'static str {
        match n {
            "resnet20" => "CIFAR ResNet-20 (He 2016): 3 stages x 3 basic blocks 16/32/64; 272,474 params at C=10",
            "sdnet20" => "ResNet-20 with a CSC stem (SDNet: 16 atoms 3x3, lambda 0.1, T=2, >=0, 0.9/L); 272,474 params",
            "sdnet20-all" => "ResNet-20 with every 3x3 conv a CSC layer (1x1 projections stay convs); 272,474 params",
            "resnet18" => "CIFAR ResNet-18 (SDNet's baseline): 4 stages x 2 basic blocks 64..512; 11,173,962 params",
            "sdnet18" => "SDNet-18: ResNet-18 with a CSC stem 3->64 then BN (authors' code); 11,173,962 params",
            _ => "SDNet-18-all: ResNet-18 with every 3x3 conv a CSC layer; 11,173,962 params",
        }
    };
    NETS.iter().map(|&(name, ..)| NetSpec { name, about: about(name), classes: 10, input: [3, 32, 32] }).collect()
}

/// A ResNet: `stem → bn → (ReLU) → blocks → global average pool → fc`.
pub struct ResNet<T: Element> {
    pub stem: Box<dyn Layer<T>>,
    pub bn: BatchNorm2d,
    pub stem_relu: bool,
    pub blocks: Sequential<T>,
    pub fc: Linear,
}

impl<T: Element> Layer<T> for ResNet<T> {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let mut h = self.bn.forward(cx, &self.stem.forward(cx, x)?)?;
        if self.stem_relu {
            h = h.relu();
        }
        let h = GlobalAvgPool.forward(cx, &self.blocks.forward(cx, &h)?)?;
        self.fc.forward(cx, &h)
    }
}

/// The CSC configuration of the options of `cfg` (see the module's documentation).
pub fn csc_config(cfg: &NetConfig) -> std::result::Result<CscConfig, String> {
    let prox = match cfg.get("prox", "nonneg".to_string())?.as_str() {
        "nonneg" => Prox::NonNegative,
        "signed" => Prox::Signed,
        p => return Err(format!("{}: prox must be nonneg or signed, got '{p}'", cfg.name)),
    };
    let momentum = match cfg.get("momentum", "sdnet".to_string())?.as_str() {
        "sdnet" => Momentum::Sdnet,
        "bt" => Momentum::BeckTeboulle,
        m => return Err(format!("{}: momentum must be sdnet or bt, got '{m}'", cfg.name)),
    };
    let gradient = match cfg.get("gradient", "unrolled".to_string())?.as_str() {
        "unrolled" => Gradient::Unrolled,
        "implicit" => Gradient::Implicit(Implicit::default()),
        g => return Err(format!("{}: gradient must be unrolled or implicit, got '{g}'", cfg.name)),
    };
    let fista = FistaConfig::new(cfg.get("lambda", 0.1)?, cfg.get("iters", 2)?)
        .step_scale(cfg.get("step", 0.9)?)
        .prox(prox)
        .momentum(momentum);
    Ok(CscConfig { fista, conv: Conv2dParams::new().padding(1), gradient })
}

/// Spatial size after a 3×3 conv with padding 1 and `stride`.
fn out_hw(hw: [usize; 2], stride: usize) -> [usize; 2] {
    hw.map(|n| (n - 1) / stride + 1)
}

/// A 3×3 convolution with padding 1 (bias-free), or the CSC layer in its place.
fn conv3<T: Element>(
    pb: &mut ParamBuilder<'_, T>,
    cin: usize,
    cout: usize,
    stride: usize,
    hw: [usize; 2],
    csc: Option<(&CscConfig, bool)>,
) -> Box<dyn Layer<T>> {
    match csc {
        None => Box::new(Conv2d::new(pb, cin, cout, 3, Conv2dParams::new().stride(stride).padding(1), false)),
        Some((c, learn)) => {
            let mut c = c.clone();
            c.conv = c.conv.stride(stride);
            let layer = CscLayer::new(pb, cin, cout, 3, hw, c);
            Box::new(if learn { layer.learned_lambda(pb) } else { layer })
        }
    }
}

/// Builds the ResNet called `cfg.name` (one of [`specs`]).
pub fn build<T: Element>(cfg: &NetConfig, pb: &mut ParamBuilder<'_, T>) -> std::result::Result<ResNet<T>, String> {
    let &(name, stages, csc_stem, csc_all) =
        NETS.iter().find(|n| n.0 == cfg.name).ok_or_else(|| format!("'{}' is not a ResNet", cfg.name))?;
    let [c, h, w] = cfg.input;
    if h < 2 || w < 2 {
        return Err(format!("{name}: the input must be at least 2×2, the configuration says {h}×{w}"));
    }
    let csc = csc_config(cfg)?;
    let learn = cfg.get("learn_lambda", false)?;
    let mut stem_csc = csc.clone();
    stem_csc.fista.lambda = cfg.get("stem_lambda", csc.fista.lambda)?;
    let stem_relu = cfg.get("stem_relu", !name.starts_with("sdnet18"))?;
    let width0 = stages[0].0;
    let mut hw = [h, w];
    let stem = conv3(&mut pb.pp("stem"), c, width0, 1, hw, csc_stem.then_some((&stem_csc, learn)));
    let bn = BatchNorm2d::new(&mut pb.pp("bn"), width0);
    let mut blocks = Sequential::new();
    let mut cin = width0;
    let inner = csc_all.then_some((&csc, learn));
    for (si, &(cout, n)) in stages.iter().enumerate() {
        for bi in 0..n {
            let stride = if si > 0 && bi == 0 { 2 } else { 1 };
            let mut pb = pb.pp("blocks");
            let mut pb = pb.pp(blocks.len());
            let hw2 = out_hw(hw, stride);
            let body = Sequential::new()
                .add(conv3(&mut pb.pp("c1"), cin, cout, stride, hw, inner))
                .add(BatchNorm2d::new(&mut pb.pp("b1"), cout))
                .add(Relu)
                .add(conv3(&mut pb.pp("c2"), cout, cout, 1, hw2, inner))
                .add(BatchNorm2d::new(&mut pb.pp("b2"), cout));
            let shortcut = (stride != 1 || cin != cout).then(|| {
                let mut sc = pb.pp("sc");
                let conv = Conv2d::new(&mut sc.pp(0), cin, cout, 1, Conv2dParams::new().stride(stride), false);
                Box::new(Sequential::new().add(conv).add(BatchNorm2d::new(&mut sc.pp(1), cout))) as Box<dyn Layer<T>>
            });
            blocks.push(Residual { body: Box::new(body), shortcut, post: Some(Box::new(Relu)) });
            cin = cout;
            hw = hw2;
        }
    }
    let fc = Linear::new(&mut pb.pp("fc"), cin, cfg.classes, true);
    Ok(ResNet { stem, bn, stem_relu, blocks, fc })
}

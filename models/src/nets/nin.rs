//! Network in Network for CIFAR (Lin et al. 2013) and its double-sparsity version DS-NiN
//! (docs/math.md §3, `double-sparsity-nin.txt`).
//!
//! `nin`: three mlpconv blocks — 5×5 conv 192, 1×1 160, 1×1 96, max-pool 3/2 (ceil),
//! dropout 0.5; 5×5 conv 192, 1×1 192, 1×1 192, avg-pool 3/2 (ceil), dropout 0.5; 3×3 conv
//! 192, 1×1 192, 1×1 C — each conv followed by ReLU, then global average pooling. 966,986
//! parameters at C = 10.
//!
//! `ds-nin`: every k×k conv (k > 1) replaced by the fixed overcomplete-DCT conv
//! ([`DctConv2d`]: filters a buffer, bias trained): 160,010 trainable parameters at C = 10.
//! The option `zeta` (default 0: off) attaches the paper's shrinkage `Shrink(ζ)` to the 1×1
//! convolution after every DCT conv (the coefficients `2.weight`, `10.weight`, `18.weight`);
//! `shrink = proximal` uses the threshold `lr·ζ` instead of `ζ`. The option `init`
//! (`pytorch`, the default: `nn.Conv2d`'s; or `kaiming`: every trained conv weight
//! `N(0, 2/fan_in)` and its bias 0) picks the initialisation: from PyTorch's default the
//! nine ReLU layers before the global pooling shrink the signal until the network predicts
//! uniform outputs, where it stays for hundreds of steps (docs/RESULTS.md §4).
//!
//! Names are the indices of the `nn.Sequential` of `../shared/peers/networks.py`
//! (`0.weight` or `0.phi`, `0.bias`, `2.weight`, …, `20.bias`).

use engine::{Conv2dParams, Element};
use sparse::dct::Shrink;

use super::{NetConfig, NetSpec};
use crate::layers::{
    shrink_coefficients, AvgPool2d, Conv2d, DctConv2d, Dropout, GlobalAvgPool, Layer, MaxPool2d, ParamBuilder, Relu,
    Sequential,
};

pub fn specs() -> Vec<NetSpec> {
    vec![
        NetSpec {
            name: "nin",
            about: "Network in Network for CIFAR (3 mlpconv blocks, global avg pool); 966,986 params at C=10",
            classes: 10,
            input: [3, 32, 32],
        },
        NetSpec {
            name: "ds-nin",
            about: "DS-NiN: NiN with fixed overcomplete-DCT kxk convs (double sparsity); 160,010 trainable at C=10",
            classes: 10,
            input: [3, 32, 32],
        },
    ]
}

/// Builds `nin` or `ds-nin` (`cfg.name`) for `cfg.input = [C, H, W]` (H, W ≥ 5).
pub fn build<T: Element>(cfg: &NetConfig, pb: &mut ParamBuilder<'_, T>) -> Result<Sequential<T>, String> {
    let ds = match cfg.name.as_str() {
        "nin" => false,
        "ds-nin" => true,
        other => return Err(format!("'{other}' is not a NiN")),
    };
    let [c, h, w] = cfg.input;
    if h < 5 || w < 5 {
        return Err(format!("{}: the input must be at least 5×5, the configuration says {h}×{w}", cfg.name));
    }
    let zeta: f64 = cfg.get("zeta", 0.0)?;
    let shrink = match cfg.get("shrink", "paper".to_string())?.as_str() {
        "paper" => Shrink::new(zeta),
        "proximal" => Shrink::proximal(zeta),
        s => return Err(format!("{}: shrink must be paper or proximal, got '{s}'", cfg.name)),
    };
    if !(zeta >= 0.0 && zeta.is_finite()) {
        return Err(format!("{}: zeta must be finite and ≥ 0, got {zeta}", cfg.name));
    }
    let kaiming = match cfg.get("init", "pytorch".to_string())?.as_str() {
        "pytorch" => false,
        "kaiming" => true,
        s => return Err(format!("{}: init must be pytorch or kaiming, got '{s}'", cfg.name)),
    };
    let mut net = Sequential::<T>::new();
    // A trained convolution at index `i`, initialised as `init` says.
    let trained = |pb: &mut ParamBuilder<'_, T>, i: usize, cin: usize, f: usize, k: usize, geometry: Conv2dParams| {
        let mut pb = pb.pp(i);
        let conv = Conv2d::new(&mut pb, cin, f, k, geometry, true);
        if kaiming {
            conv.init_kaiming(&mut pb);
        }
        conv
    };
    // A k×k conv (or its DCT replacement) at index `i`.
    let kxk = |pb: &mut ParamBuilder<'_, T>, i: usize, cin: usize, f: usize, k: usize, pad: usize| {
        let conv = Conv2dParams::new().padding(pad);
        if ds {
            Box::new(DctConv2d::new(&mut pb.pp(i), cin, f, k, conv)) as Box<dyn Layer<T>>
        } else {
            Box::new(trained(pb, i, cin, f, k, conv))
        }
    };
    // A 1×1 conv at index `i`; `coefficients`: it follows a k×k conv (shrunk in ds-nin).
    let one = |pb: &mut ParamBuilder<'_, T>, i: usize, cin: usize, f: usize, coefficients: bool| {
        let conv = trained(pb, i, cin, f, 1, Conv2dParams::new());
        if ds && coefficients && zeta > 0.0 {
            shrink_coefficients(pb, &conv, shrink);
        }
        conv
    };
    net.layers.push(kxk(pb, 0, c, 192, 5, 2));
    net.push(Relu);
    net.push(one(pb, 2, 192, 160, true));
    net.push(Relu);
    net.push(one(pb, 4, 160, 96, false));
    net.push(Relu);
    net.push(MaxPool2d::new(3, 2).ceil_mode(true));
    net.push(Dropout::new(0.5));
    net.layers.push(kxk(pb, 8, 96, 192, 5, 2));
    net.push(Relu);
    net.push(one(pb, 10, 192, 192, true));
    net.push(Relu);
    net.push(one(pb, 12, 192, 192, false));
    net.push(Relu);
    net.push(AvgPool2d::new(3, 2).ceil_mode(true));
    net.push(Dropout::new(0.5));
    net.layers.push(kxk(pb, 16, 192, 192, 3, 1));
    net.push(Relu);
    net.push(one(pb, 18, 192, 192, true));
    net.push(Relu);
    net.push(one(pb, 20, 192, cfg.classes, false));
    net.push(Relu);
    net.push(GlobalAvgPool); // AdaptiveAvgPool2d(1) and Flatten (indices 22, 23)
    Ok(net)
}

//! The MatConvNet MNIST LeNet: conv 5×5 1→20, max-pool 2/2, conv 5×5 20→50, max-pool 2/2,
//! conv 4×4 50→500 (a fully connected layer on the 4×4 maps), ReLU, linear 500→C.
//! 431,080 parameters at C = 10. Names follow the `nn.Sequential` of
//! `../shared/peers/networks.py` (`0.weight`, `2.weight`, `4.weight`, `7.weight`).

use engine::{Conv2dParams, Element};

use super::{NetConfig, NetSpec};
use crate::layers::{Conv2d, Flatten, Linear, MaxPool2d, ParamBuilder, Relu, Sequential};

pub fn spec() -> NetSpec {
    NetSpec {
        name: "lenet",
        about: "MatConvNet MNIST LeNet (conv5-pool-conv5-pool-conv4-relu-linear)",
        classes: 10,
        input: [1, 28, 28],
    }
}

/// Builds LeNet for `cfg.input = [C, 28, 28]` and `cfg.classes` outputs.
pub fn build<T: Element>(cfg: &NetConfig, pb: &mut ParamBuilder<'_, T>) -> Result<Sequential<T>, String> {
    let [c, h, w] = cfg.input;
    if h != 28 || w != 28 {
        return Err(format!("lenet takes 28×28 images, the configuration says {h}×{w}"));
    }
    let conv = Conv2dParams::new();
    Ok(Sequential::new()
        .add(Conv2d::new(&mut pb.pp(0), c, 20, 5, conv, true))
        .add(MaxPool2d::new(2, 2))
        .add(Conv2d::new(&mut pb.pp(2), 20, 50, 5, conv, true))
        .add(MaxPool2d::new(2, 2))
        .add(Conv2d::new(&mut pb.pp(4), 50, 500, 4, conv, true))
        .add(Relu)
        .add(Flatten)
        .add(Linear::new(&mut pb.pp(7), 500, cfg.classes, true)))
}

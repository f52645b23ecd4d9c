//! The MatConvNet MNIST LeNet used by the benchmarks and the `train` demo:
//! conv 5×5 1→20, max-pool 2/2, conv 5×5 20→50, max-pool 2/2, conv 4×4 50→500 (a fully
//! connected layer on the 4×4 maps), ReLU, linear 500→10. 431,080 parameters.

use autograd::Var;
use engine::{Conv2dParams, Element, Pool2dParams, Rng};

use crate::params::{uniform_fan_in, ParamSet};

/// LeNet for `[N, 1, 28, 28]` inputs, producing `[N, 10]` logits.
#[derive(Clone, Debug)]
pub struct LeNet<T: Element> {
    pub params: ParamSet<T>,
}

impl<T: Element> LeNet<T> {
    /// PyTorch-style initialisation (`uniform_fan_in`) from `rng`.
    pub fn new(rng: &mut Rng) -> Self {
        let mut params = ParamSet::new();
        for (name, o, i, k) in [("conv1", 20, 1, 5), ("conv2", 50, 20, 5), ("conv3", 500, 50, 4)] {
            let fan_in = i * k * k;
            params.add(&format!("{name}.weight"), uniform_fan_in(&[o, i, k, k], fan_in, rng));
            params.add(&format!("{name}.bias"), uniform_fan_in(&[o], fan_in, rng));
        }
        params.add("fc.weight", uniform_fan_in(&[10, 500], 500, rng));
        params.add("fc.bias", uniform_fan_in(&[10], 500, rng));
        LeNet { params }
    }

    /// Logits `[N, 10]` for images `x: [N, 1, 28, 28]`, with `p` the bound parameters
    /// (`net.params.bind(&tape)`). An associated function (it needs nothing but the
    /// parameters), so it can be passed while the parameters are borrowed mutably.
    #[track_caller]
    pub fn forward<'t>(p: &[Var<'t, T>], x: &Var<'t, T>) -> Var<'t, T> {
        assert_eq!(p.len(), 8, "LeNet::forward: expected 8 bound parameters, got {}", p.len());
        let conv = Conv2dParams::new();
        let pool = Pool2dParams::new(2);
        let h = x.conv2d(&p[0], Some(&p[1]), conv).max_pool2d(pool);
        let h = h.conv2d(&p[2], Some(&p[3]), conv).max_pool2d(pool);
        let h = h.conv2d(&p[4], Some(&p[5]), conv).relu();
        let n = h.dim(0);
        let h = h.reshape(&[n, 500]);
        h.matmul(&p[6].t()).add(&p[7])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::classifier_step;
    use autograd::optim::Sgd;
    use engine::Tensor;

    #[test]
    fn shapes_parameter_count_and_loss_decreases_on_a_fixed_batch() {
        let mut rng = Rng::new(0);
        let mut net = LeNet::<f32>::new(&mut rng);
        assert_eq!(net.params.count(), 431_080);
        let x = Tensor::<f32>::randn(&[8, 1, 28, 28], &mut rng);
        let labels: Vec<usize> = (0..8).map(|i| i % 10).collect();
        let mut opt = Sgd::new(0.01).momentum(0.9);
        let first = classifier_step(&mut net.params, &mut opt, LeNet::forward, &x, &labels).unwrap().0;
        let mut last = first;
        for _ in 0..20 {
            last = classifier_step(&mut net.params, &mut opt, LeNet::forward, &x, &labels).unwrap().0;
        }
        // Memorising 8 samples: the loss must fall well below its starting value (≈ ln 10).
        assert!(first > 1.5 && last < 0.5 * first, "first {first}, last {last}");
    }
}

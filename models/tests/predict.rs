//! `Model::predict` runs on an inference tape; its output has the bits of the recorded
//! eval-mode forward. `Model::unsupervised` gives the term of the networks that have one.

use autograd::Tape;
use engine::{Rng, Tensor};
use sparsegrad_models::layers::Mode;
use sparsegrad_models::nets::{unsupervised, Model, NetConfig};

/// Small versions of the networks (the tests run unoptimised).
fn small(name: &str) -> NetConfig {
    let cfg = NetConfig::new(name).unwrap();
    match name {
        "dcea" => cfg
            .input([1, 16, 16])
            .option("filters", 4)
            .option("kernel", 5)
            .option("stride", 2)
            .option("iters", 2)
            .option("fold_iters", 5)
            .option("fold_image", 32),
        "sc-convnet" => cfg.option("width", 4),
        "sdnet20" => cfg.input([3, 8, 8]),
        _ => cfg,
    }
}

fn recorded_eval(model: &Model<f32>, x: &Tensor<f32>) -> Tensor<f32> {
    let tape = Tape::new();
    let cx = model.store.bind(&tape, Mode::Eval, 0);
    model.forward(&cx, &tape.constant(x.clone())).unwrap().value()
}

#[test]
fn predict_on_an_inference_tape_has_the_bits_of_the_recorded_eval_forward() {
    for name in ["lenet", "sf-lenet", "csf-lenet", "sdnet20", "dcea", "sc-convnet"] {
        let cfg = small(name);
        let model = Model::<f32>::new(&cfg, &mut Rng::new(3)).unwrap();
        let [c, h, w] = cfg.input;
        let x = Tensor::rand_uniform(&[2, c, h, w], 0.0, 1.0, &mut Rng::new(4));
        let got = model.predict(&x).unwrap();
        let want = recorded_eval(&model, &x);
        assert_eq!(got.shape(), want.shape(), "{name}");
        let bits = |t: &Tensor<f32>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{name}");
    }
}

#[test]
fn model_unsupervised_is_the_term_of_the_networks_that_have_one() {
    for name in unsupervised::NAMES {
        let cfg = small(name);
        let model = Model::<f32>::new(&cfg, &mut Rng::new(5)).unwrap();
        let net = model.unsupervised().expect("has a term").unwrap();
        let [c, h, w] = cfg.input;
        let x = Tensor::rand_uniform(&[2, c, h, w], 0.0, 1.0, &mut Rng::new(6));
        // The rebuilt network reads the model's parameters: same forward bits.
        let tape = Tape::new();
        let cx = model.store.bind(&tape, Mode::Eval, 0);
        let xv = tape.constant(x.clone());
        let a = net.forward(&cx, &xv).unwrap().value().to_vec();
        assert_eq!(a, recorded_eval(&model, &x).to_vec(), "{name}");
        let lu = net.unsupervised_loss(&cx, &xv).unwrap().value().to_vec();
        assert!(lu.len() == 1 && lu[0].is_finite(), "{name}: {lu:?}");
    }
    let lenet = Model::<f32>::new(&NetConfig::new("lenet").unwrap(), &mut Rng::new(0)).unwrap();
    assert!(lenet.unsupervised().is_none());
}

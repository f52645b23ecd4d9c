//! `fit`: the same seed gives the same bits whatever the thread count; a run stopped by the
//! flag and resumed from its progress (weights, buffers, optimiser state carried over)
//! continues bit-identically; BatchNorm's running statistics are written back; the
//! semi-supervised term and the custom loss take part.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use autograd::optim::{Adam, Optimizer, Sgd, StepLr};
use datasets::{embedded, ImageSet, LoaderConfig};
use engine::{Conv2dParams, Rng};
use sparsegrad_models::fit::{evaluate, Fit, FitConfig, Hooks, Loss, Progress, Schedule, Unsupervised};
use sparsegrad_models::layers::{BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Relu, Sequential, Store};
use sparsegrad_models::nets::{Model, NetConfig};

/// conv 3×3 1→4, BatchNorm, ReLU, max-pool 2, Dropout ½, linear 676→10: Dropout and
/// BatchNorm make the per-step seed and the written-back buffers matter.
fn tiny(seed: u64) -> Model<f32> {
    let config = NetConfig { name: "tiny".into(), classes: 10, input: [1, 28, 28], options: BTreeMap::new() };
    let mut store = Store::new();
    let mut rng = Rng::new(seed);
    let net = {
        let mut pb = store.builder(&mut rng);
        Sequential::new()
            .add(Conv2d::new(&mut pb.pp("c"), 1, 4, 3, Conv2dParams::new(), true))
            .add(BatchNorm2d::new(&mut pb.pp("bn"), 4))
            .add(Relu)
            .add(MaxPool2d::new(2, 2))
            .add(Dropout::new(0.5))
            .add(Flatten)
            .add(Linear::new(&mut pb.pp("fc"), 676, 10, true))
    };
    Model { config, store, net: Box::new(net) }
}

fn data(n: usize) -> ImageSet {
    embedded::mnist_subset().train.subset(&(0..n).collect::<Vec<_>>())
}

fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        schedule: Some(Schedule { base_lr: 0.05, rule: Box::new(StepLr { step_size: 1, gamma: 0.5 }) }),
        ..FitConfig::new(LoaderConfig::new(8), 11)
    }
}

fn bits(m: &Model<f32>) -> Vec<(String, Vec<u32>)> {
    (m.store.params().chain(m.store.buffers()))
        .map(|(n, t)| (n.to_string(), t.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn sgd() -> Sgd<f32> {
    Sgd::new(0.05).momentum(0.9).nesterov(true)
}

/// Three epochs of 3 steps (24 images, batch 8) with a validation set; returns the bits.
fn run_full(threads: usize) -> Vec<(String, Vec<u32>)> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let (train, val) = (data(24), data(40).subset(&(24..40).collect::<Vec<_>>()));
        let mut m = tiny(3);
        let mut opt = sgd();
        let out =
            Fit::new(&train, config(3)).validate_on(&val).run(&mut m, &mut opt, Progress::default(), &mut ()).unwrap();
        assert!(!out.stopped);
        assert_eq!(out.progress, Progress { epoch: 3, batch: 0, step: 9, ..out.progress });
        assert!(out.last.unwrap().val.unwrap().accuracy.is_some());
        bits(&m)
    })
}

#[test]
fn same_seed_same_bits_whatever_the_thread_count() {
    let one = run_full(1);
    let two = run_full(2);
    assert_eq!(one, two);
    let fresh = bits(&tiny(3));
    for ((n, a), (_, b)) in one.iter().zip(&fresh) {
        assert_ne!(a, b, "{n} did not change: the step or Ctx::finish did not reach it");
    }
}

#[test]
fn stopped_and_resumed_run_is_bit_identical() {
    let (train, val) = (data(24), data(40).subset(&(24..40).collect::<Vec<_>>()));
    let full = run_full(2);
    for stop_at in [2u64, 3, 4] {
        // stop after `stop_at` steps (mid-epoch 1, its end, mid-epoch 2)
        let flag = Arc::new(AtomicBool::new(false));
        let mut m = tiny(3);
        let mut opt = sgd();
        let f = flag.clone();
        let mut hooks = Hooks::new().step(move |r| {
            if r.step == stop_at {
                f.store(true, Ordering::SeqCst)
            }
        });
        let fit = Fit::new(&train, config(3)).validate_on(&val).stop_flag(flag);
        let out = fit.run(&mut m, &mut opt, Progress::default(), &mut hooks).unwrap();
        assert!(out.stopped);
        let s = stop_at as usize;
        assert_eq!(
            (out.progress.step, out.progress.epoch, out.progress.batch),
            (stop_at, (s - 1) / 3, (s - 1) % 3 + 1)
        );
        // a "fresh process": another initialisation, weights and state copied over
        let mut m2 = tiny(99);
        for (n, t) in m.store.params().chain(m.store.buffers()) {
            m2.store.set(n, t.clone()).unwrap();
        }
        let mut opt2 = sgd();
        opt2.load_state(opt.state()).unwrap();
        drop((m, opt));
        let fit = Fit::new(&train, config(3)).validate_on(&val);
        let out = fit.run(&mut m2, &mut opt2, out.progress, &mut ()).unwrap();
        assert_eq!(out.progress.step, 9);
        assert_eq!(bits(&m2), full, "resumed after {stop_at} steps");
    }
}

#[test]
fn callbacks_hear_every_step_and_epoch_and_best_is_tracked() {
    let (train, val) = (data(16), data(40).subset(&(24..40).collect::<Vec<_>>()));
    let mut m = tiny(1);
    let mut opt = Adam::new(1e-3);
    let (mut steps, mut epochs) = (vec![], vec![]);
    let mut hooks = Hooks::new().step(|r| steps.push((r.epoch, r.batch, r.step, r.loss.is_finite()))).epoch(|r, s| {
        epochs.push((r.epoch, r.val.unwrap().n, r.best, s.progress.epoch, s.opt.kind().to_string()));
        Ok(())
    });
    let out =
        Fit::new(&train, config(2)).validate_on(&val).run(&mut m, &mut opt, Progress::default(), &mut hooks).unwrap();
    drop(hooks);
    assert_eq!(steps, vec![(0, 0, 1, true), (0, 1, 2, true), (1, 0, 3, true), (1, 1, 4, true)]);
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[0], (0, 16, true, 1, "adam".to_string()));
    assert!(out.progress.best_val_acc.is_some());
    // the schedule set epoch 1's rate: 0.05 · 0.5
    assert_eq!(opt.lr(), 0.025);
}

#[test]
fn evaluation_leaves_buffers_alone_and_matches_predict() {
    let val = data(20);
    let m = tiny(5);
    let before = bits(&m);
    let e = evaluate(&m, &val, &Loss::CrossEntropy, &LoaderConfig::new(8), 7).unwrap();
    assert_eq!(bits(&m), before);
    assert_eq!(e.n, 20);
    let mut correct = 0;
    for i in 0..20 {
        let x = datasets::Dataset::image_f32(&val, i).reshape(&[1, 1, 28, 28]);
        let p = m.predict(&x).unwrap().argmax(1)[0];
        correct += (p == datasets::Dataset::label(&val, i)) as usize;
    }
    assert_eq!(e.accuracy.unwrap(), correct as f64 / 20.0);
}

#[test]
fn custom_loss_and_unsupervised_term_take_part() {
    let train = data(16);
    let unl = data(40).subset(&(16..40).collect::<Vec<_>>());
    let run = |gamma: f64, custom: bool| {
        let mut m = tiny(2);
        let mut opt = sgd();
        let mut fit = Fit::new(&train, config(1));
        if custom {
            // cross-entropy written as a closure: the same bits as the built-in
            fit = fit.loss(Loss::custom(|m, cx, x, b| {
                let labels: Vec<usize> = b.y.iter().map(|&y| y as usize).collect();
                Ok(m.forward(cx, x)?.cross_entropy(&labels, autograd::Reduction::Mean))
            }));
        }
        fit = fit.semi_supervised(Unsupervised {
            data: &unl,
            batch_size: 5,
            gamma,
            term: Box::new(|m, cx, x| Ok(m.forward(cx, x)?.square().mean_all())),
        });
        fit.run(&mut m, &mut opt, Progress::default(), &mut ()).unwrap();
        bits(&m)
    };
    assert_eq!(run(0.0, false), run(0.0, true));
    assert_ne!(run(0.0, false), run(0.1, false));
}

#[test]
fn max_steps_stops_mid_epoch_at_the_same_bits_as_a_stop_flag() {
    // 24 images in batches of 8: 3 steps an epoch; stop after 4 steps (mid-epoch 2).
    let train = data(24);
    let cfg = NetConfig::new("lenet").unwrap();
    let run = |max_steps: Option<u64>, epochs: usize| {
        let mut m = Model::<f32>::new(&cfg, &mut Rng::new(3)).unwrap();
        let mut opt = sgd();
        let fc = FitConfig { max_steps, ..config(epochs) };
        let out = Fit::new(&train, fc).run(&mut m, &mut opt, Progress::default(), &mut ()).unwrap();
        (bits(&m), out.progress)
    };
    let (a, pa) = run(Some(4), usize::MAX);
    assert_eq!((pa.epoch, pa.batch, pa.step), (1, 1, 4));
    // The same 4 steps as 2 epochs minus the last 2 batches: compare with 4 steps reached by
    // running 1 epoch then 1 step of the next via max_steps on a 2-epoch budget.
    let (b, pb) = run(Some(4), 2);
    assert_eq!(pb.step, 4);
    assert_eq!(a, b);
    let (c, _) = run(None, 1);
    assert_ne!(a, c, "4 steps must differ from 3");
}

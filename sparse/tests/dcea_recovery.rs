//! Planted recovery: unsupervised DCEA training (minimise the Binomial negative
//! log-likelihood with Adam) on data sampled from the model recovers the planted atoms up to
//! shift, measured by the best-match normalised correlation
//! `max over shifts τ and learned atoms j of |⟨p, h_j(· + τ)⟩| / (‖p‖·‖h_j‖)`.
//!
//! The data: 2 planted atoms of 16 taps (standard normal, unit norm), 32 signals of 128
//! samples (`[N, 1, 1, 128]`, 1-D as 1×L images), codes active with probability 0.015 at each
//! of the 113 positions of each atom with amplitudes U(4, 8), and `y ~ Binomial(50, σ(H x))`.
//! The model learns 2 atoms of 20 taps (longer than the planted ones, so that a learned atom
//! can hold a shifted copy whole), from a random start.
//!
//! ## The threshold, 0.9
//! * Random atoms score far below it: for 2 random atoms of 20 taps against the planted pair,
//!   the weaker planted atom's best match (the statistic asserted here) had, over 2000 draws
//!   for each of seeds 1–12, a median of 0.42–0.46, a 99.9th percentile of 0.61–0.68 and a
//!   maximum of 0.62–0.71. The test computes this baseline for its own seed and asserts that
//!   the threshold is at least 0.1 above its maximum.
//! * Training reaches it on most problems: with this exact procedure and seeds 1–12 (which
//!   change the planted atoms, the data and the start), the weaker atom's final score was
//!   0.849, 0.907, 0.934, 0.948, 0.948, 0.973, 0.973, 0.978, 0.987, 0.988, 0.996, 0.996. The
//!   one miss (seed 6, 0.849) is a local optimum that 250 steps do not leave. The test uses
//!   seed 10, the median (0.973 and 0.976).
//! * The scores do not reach 1: the unrolled encoder (60 ISTA steps) is biased by its
//!   threshold and the tied decoder adapts to that bias.
//!
//! Runs in about 0.9 s of CPU in release.

use autograd::optim::{Adam, Optimizer, PostStep, UnitNormAtoms};
use autograd::{Reduction, Tape};
use engine::{ConvTranspose2dParams, Rng, Tensor};
use sparsegrad_sparse::dcea::{dcea_forward, nll, power_estimate, Dcea, DceaConfig, Family, PowerFold, Threshold};

/// Atoms, planted taps, learned taps.
const K: usize = 2;
const PLANTED: usize = 16;
const LEARNED: usize = 20;
/// Signals, samples per signal, Binomial trials.
const N: usize = 32;
const LEN: usize = 128;
const M: f64 = 50.0;
const THRESHOLD: f64 = 0.9;

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// `max_τ |Σ_t â(t)·b̂(t + τ)|` over every shift with some overlap (zero outside each atom),
/// `â`, `b̂` the unit-norm atoms.
fn best_shift(a: &[f64], b: &[f64]) -> f64 {
    let (ka, kb) = (a.len() as isize, b.len() as isize);
    let (a, b) = (unit(a), unit(b));
    (1 - ka..kb)
        .map(|tau| {
            (0..ka).filter(|t| (0..kb).contains(&(t + tau))).map(|t| a[t as usize] * b[(t + tau) as usize]).sum::<f64>()
        })
        .fold(0.0, |m, c| m.max(c.abs()))
}

/// For each planted atom: its best match over the learned atoms, and which atom that is.
fn matches(planted: &[Vec<f64>], learned: &[Vec<f64>]) -> Vec<(f64, usize)> {
    planted
        .iter()
        .map(|p| {
            learned
                .iter()
                .enumerate()
                .map(|(j, l)| (best_shift(p, l), j))
                .fold((0.0, 0), |m, s| if s.0 > m.0 { s } else { m })
        })
        .collect()
}

fn atoms_of(h: &Tensor<f64>) -> Vec<Vec<f64>> {
    h.to_vec().chunks(h.dim(3)).map(|c| c.to_vec()).collect()
}

#[test]
fn unsupervised_binomial_dcea_recovers_planted_atoms() {
    // Seed 10: the median of the 12 seeds tried (module docs).
    let seed = 10;
    let mut rng = Rng::new(seed);
    let planted: Vec<Vec<f64>> =
        (0..K).map(|_| unit(&(0..PLANTED).map(|_| rng.normal()).collect::<Vec<_>>())).collect();

    // The random baseline: the weaker planted atom's best match among K random atoms.
    let mut base: Vec<f64> = (0..2000)
        .map(|_| {
            let r: Vec<Vec<f64>> = (0..K).map(|_| (0..LEARNED).map(|_| rng.normal()).collect()).collect();
            matches(&planted, &r).iter().map(|m| m.0).fold(1.0, f64::min)
        })
        .collect();
    base.sort_by(f64::total_cmp);
    eprintln!("random atoms: median {:.3}, 99.9% {:.3}, max {:.3}", base[1000], base[1998], base[1999]);
    assert!(base[1999] < THRESHOLD - 0.1, "random atoms reach {:.3}", base[1999]);

    // Data sampled from the model.
    let positions = LEN - PLANTED + 1;
    let x: Vec<f64> =
        (0..N * K * positions).map(|_| if rng.uniform() < 0.015 { rng.uniform_in(4.0, 8.0) } else { 0.0 }).collect();
    let x = Tensor::from_vec(x, &[N, K, 1, positions]);
    let h = Tensor::from_vec(planted.concat(), &[K, 1, 1, PLANTED]);
    let eta = x.conv_transpose2d(&h, None, ConvTranspose2dParams::new());
    let y: Vec<f64> = eta
        .to_vec()
        .iter()
        .map(|&e| {
            let p = 1.0 / (1.0 + (-e).exp());
            (0..M as usize).filter(|_| rng.uniform() < p).count() as f64
        })
        .collect();
    let y = Tensor::from_vec(y, &[N, 1, 1, LEN]);

    // The model: unit-norm random atoms, the step α = 1/L with L = (M/4)·‖H‖₂² the Lipschitz
    // constant of the NLL's gradient in x (σ' ≤ 1/4), ‖H‖₂² from a power iteration on the
    // initial atoms (the Gaussian map v ↦ HᵀHv); b = 0.2, i.e. λ = b/α in units of
    // Hᵀ(y − Mσ), whose noise has a standard deviation of at most √(M/4) ≈ 3.5 per entry.
    let cfg = DceaConfig::new(Family::Gaussian, K, [1, LEARNED]).fold(None);
    let start = Dcea::<f64>::new(cfg, &mut Rng::new(seed + 1)).unwrap();
    let fold = PowerFold { iters: 100, image: [1, LEN], factor: 1.0, seed: 3 };
    let gram = power_estimate(&start.h, &start.config, &fold, None).unwrap();
    let step = 1.0 / (M / 4.0 * gram);
    let cfg = DceaConfig::new(Family::Binomial { trials: M }, K, [1, LEARNED])
        .iters(60)
        .threshold(Threshold::OneSided, 0.2)
        .step(step)
        .fold(None);
    let mut model = Dcea::<f64>::from_filters(cfg.clone(), start.h.clone()).unwrap();
    let before = matches(&planted, &atoms_of(&model.h));
    eprintln!("‖H‖² = {gram:.3}, step {step:.4}, λ = {:.1}; random start: {before:?}", 0.2 / step);

    // Adam on H only (b stays fixed: the unsupervised objective has no ℓ1 term, the
    // threshold plays its part), minibatches of 8, atoms back to unit norm after each step.
    let lr = 0.05;
    let mut opt = Adam::<f64>::new(lr);
    let unit_norm = UnitNormAtoms { atom_axes: vec![1, 2, 3], exact: true };
    let (steps, batch) = (150, 8);
    let mut first_epoch = 0.0;
    let mut last_epoch = 0.0;
    for it in 0..steps {
        if it == steps * 3 / 5 {
            opt.set_lr(lr * 0.2);
        }
        let yb = y.narrow(0, (it * batch) % N, batch).contiguous();
        let tape = Tape::<f64>::new();
        let p = model.bind(&tape);
        let yv = tape.constant(yb);
        let out = dcea_forward(&p, &yv, &cfg);
        let loss = nll(cfg.family, &out.eta, &yv, Reduction::Mean);
        let g = tape.backward(&loss).unwrap();
        opt.step(&mut [&mut model.h], &[g.get(&p.h).cloned()]);
        unit_norm.apply(&mut model.h, lr);
        let epoch = N / batch;
        if it < epoch {
            first_epoch += loss.item() / epoch as f64;
        } else if it >= steps - epoch {
            last_epoch += loss.item() / epoch as f64;
        }
    }
    let after = matches(&planted, &atoms_of(&model.h));
    eprintln!("NLL per sample {first_epoch:.4} → {last_epoch:.4}; recovered: {after:?}");
    assert!(last_epoch < first_epoch, "the NLL did not decrease: {first_epoch} → {last_epoch}");
    assert!(before.iter().all(|m| m.0 < 0.7), "the random start already matches: {before:?}");
    for (i, m) in after.iter().enumerate() {
        assert!(m.0 >= THRESHOLD, "planted atom {i}: best match {:.3} < {THRESHOLD} ({after:?})", m.0);
    }
    assert_ne!(after[0].1, after[1].1, "both planted atoms matched by the same learned atom: {after:?}");
}

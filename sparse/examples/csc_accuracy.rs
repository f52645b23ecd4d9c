//! Cost of the CSC layer's gradient at a given accuracy: unrolled (T iterations on the tape)
//! against implicit (T FISTA steps off the tape, then conjugate gradients on the support), on
//! 8 images of the CIFAR stem shape (3 → 64 channels, 3×3, padding 1, 32×32), signed prox, step
//! 1/L, λ = 0.5 (the solution is sparse enough for the implicit rule to apply: docs/math.md §2).
//!
//! The reference is the implicit gradient in f64 at the exact minimiser (FISTA with 3000 steps
//! and CG to 1e-10); every row reports the relative error `‖g − g_ref‖ / ‖g_ref‖` of ∂W and
//! ∂x of `⟨R, z⟩` for a fixed random R, and the time of one forward + backward in f32.
//!
//! ```text
//! cargo run --release -p sparsegrad-sparse --features timing --example csc_accuracy
//! ```

use std::time::Instant;

use autograd::{BackwardOptions, Tape};
use engine::{Conv2dParams, Element, Rng, Tensor};
use sparsegrad_sparse::csc::{csc, unit_atoms, Csc, CscConfig, Gradient, Implicit};
use sparsegrad_sparse::fista::FistaConfig;

fn grads<T: Element>(
    x: &Tensor<f64>,
    w: &Tensor<f64>,
    r: &Tensor<f64>,
    l: f64,
    cfg: &CscConfig,
) -> Result<(Tensor<f64>, Tensor<f64>, f64), String> {
    let t0 = Instant::now();
    let tape = Tape::<T>::new();
    let (xv, wv) = (tape.leaf(x.cast()), tape.leaf(w.cast()));
    let (z, _) = csc(&xv, &wv, None, l, cfg).map_err(|e| format!("forward: {e}"))?;
    let g = tape.backward_with(&z, Some(r.cast()), BackwardOptions::default()).map_err(|e| e.to_string())?;
    let (gx, gw) = (g.wrt(&xv).cast::<f64>(), g.wrt(&wv).cast::<f64>());
    Ok((gx, gw, t0.elapsed().as_secs_f64() * 1e3))
}

fn rel(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    let d: f64 = a.sub(b).to_vec().iter().map(|v| v * v).sum();
    let n: f64 = b.to_vec().iter().map(|v| v * v).sum();
    (d / n).sqrt()
}

fn main() {
    let mut rng = Rng::new(0);
    let conv = Conv2dParams::new().padding(1);
    let x = Tensor::<f64>::randn(&[8, 3, 32, 32], &mut rng);
    let mut w = unit_atoms(&Tensor::<f64>::randn(&[64, 3, 3, 3], &mut rng));
    let l = Csc::new().refresh(&mut w, conv, [32, 32]).expect("L") * 1.01;
    let r = Tensor::<f64>::randn(&[8, 64, 32, 32], &mut rng);
    let lambda = 0.5;
    let implicit = |iters, tol| CscConfig {
        fista: FistaConfig::new(lambda, iters),
        conv,
        gradient: Gradient::Implicit(Implicit { cg_tol: tol, cg_max_iter: 2000, polish: false }),
    };
    let (rx, rw, _) = grads::<f64>(&x, &w, &r, l, &implicit(3000, 1e-10)).expect("the f64 reference");
    println!("| gradient | T | CG tol | rel. error ∂W | rel. error ∂x | fwd+bwd ms (f32) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for t in [10, 20, 50, 100, 200] {
        let cfg = CscConfig { fista: FistaConfig::new(lambda, t), conv, gradient: Gradient::Unrolled };
        let (gx, gw, ms) = grads::<f32>(&x, &w, &r, l, &cfg).expect("the unrolled layer");
        println!("| unrolled | {t} | – | {:.2e} | {:.2e} | {ms:.0} |", rel(&gw, &rw), rel(&gx, &rx));
    }
    for (t, tol) in [(50, 1e-3), (100, 1e-3), (200, 1e-4), (400, 1e-4)] {
        // Too few FISTA steps leave z off the optimum, where conjugate gradients on its support
        // need not converge: the rule then returns its error (docs/math.md §2), shown in the row.
        match grads::<f32>(&x, &w, &r, l, &implicit(t, tol)) {
            Ok((gx, gw, ms)) => {
                println!("| implicit | {t} | {tol:e} | {:.2e} | {:.2e} | {ms:.0} |", rel(&gw, &rw), rel(&gx, &rx))
            }
            Err(e) => println!("| implicit | {t} | {tol:e} | failed: {e} | | |"),
        }
    }
}

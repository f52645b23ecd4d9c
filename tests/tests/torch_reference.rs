//! Every case of `shared/reference/torch-ops.json` (outputs and gradients computed by PyTorch
//! in float64) reproduced through the autograd tape: the op is built from `Var` ops, its
//! output compared, then `backward` with the file's cotangent `R` gives the gradients of
//! `Σ R ⊙ output`, compared for every input. Tolerance: `|a − b| ≤ 1e-10·max(1, |b|)`.
//!
//! The file is found through `SPARSEGRAD_REFERENCE` or at `../../shared/reference/` from this
//! crate; when it is absent (a CI machine without the shared folder) the test says so and
//! returns. Any case whose op (or a parameter of it) this file does not know fails the test,
//! so new reference cases cannot be skipped silently.

use std::path::PathBuf;

use autograd::{Reduction, Tape, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Pool2dParams, Tensor};
use serde_json::Value;
use sparsegrad_tests::{vjp, worst_rel};

const TOL: f64 = 1e-10;

fn reference_path() -> PathBuf {
    std::env::var_os("SPARSEGRAD_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/torch-ops.json")))
}

fn tensor(v: &Value) -> Tensor<f64> {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    Tensor::from_vec(data, &shape)
}

fn ints(v: &Value) -> Vec<usize> {
    v["data"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// A parameter given as one integer (both spatial axes) or as a pair (height, width).
fn pair(params: &Value, key: &str) -> [usize; 2] {
    match &params[key] {
        Value::Number(n) => [n.as_u64().unwrap() as usize; 2],
        Value::Array(a) => [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize],
        other => panic!("parameter {key}: expected an integer or a pair, got {other}"),
    }
}

fn usize_param(params: &Value, key: &str) -> usize {
    params[key].as_u64().unwrap_or_else(|| panic!("parameter {key} missing")) as usize
}

fn f64_param(params: &Value, key: &str) -> f64 {
    params[key].as_f64().unwrap_or_else(|| panic!("parameter {key} missing"))
}

fn bool_param(params: &Value, key: &str) -> bool {
    params[key].as_bool().unwrap_or_else(|| panic!("parameter {key} missing"))
}

/// `axis` (possibly negative, PyTorch style) as an index below `rank`.
fn axis(params: &Value, rank: usize) -> usize {
    let a = params["axis"].as_i64().expect("axis");
    if a < 0 {
        (rank as i64 + a) as usize
    } else {
        a as usize
    }
}

fn axes(params: &Value) -> Vec<usize> {
    params["axes"].as_array().expect("axes").iter().map(|a| a.as_u64().unwrap() as usize).collect()
}

type Build = Box<dyn for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>>;

/// How to rebuild one case: the input names in the order the closure takes them, the
/// parameters it reads, and the closure.
struct Recipe {
    inputs: &'static [&'static str],
    params: &'static [&'static str],
    build: Build,
}

fn recipe(case: &Value) -> Option<Recipe> {
    let op = case["op"].as_str().unwrap();
    let p = case["params"].clone();
    let rank = |name: &str| case["inputs"][name]["shape"].as_array().map_or(0, |s| s.len());
    let labels = || ints(&case["int_inputs"]["labels"]);
    let r = |inputs, params, build: Build| Some(Recipe { inputs, params, build });
    match op {
        "conv2d" => {
            let c = Conv2dParams {
                stride: pair(&p, "stride"),
                padding: pair(&p, "padding"),
                dilation: pair(&p, "dilation"),
                groups: usize_param(&p, "groups"),
            };
            r(
                &["input", "weight", "bias"],
                &["stride", "padding", "dilation", "groups"],
                Box::new(move |_, v| v[0].conv2d(&v[1], Some(&v[2]), c)),
            )
        }
        "conv_transpose2d" => {
            let c = ConvTranspose2dParams {
                stride: pair(&p, "stride"),
                padding: pair(&p, "padding"),
                output_padding: pair(&p, "output_padding"),
                dilation: pair(&p, "dilation"),
                groups: usize_param(&p, "groups"),
            };
            r(
                &["input", "weight", "bias"],
                &["stride", "padding", "output_padding", "dilation", "groups"],
                Box::new(move |_, v| v[0].conv_transpose2d(&v[1], Some(&v[2]), c)),
            )
        }
        "max_pool2d" | "avg_pool2d" => {
            let mut q =
                Pool2dParams::new2(pair(&p, "kernel")).stride2(pair(&p, "stride")).padding2(pair(&p, "padding"));
            if op == "max_pool2d" {
                r(&["input"], &["kernel", "stride", "padding"], Box::new(move |_, v| v[0].max_pool2d(q)))
            } else {
                q = q.count_include_pad(bool_param(&p, "count_include_pad"));
                r(
                    &["input"],
                    &["kernel", "stride", "padding", "count_include_pad"],
                    Box::new(move |_, v| v[0].avg_pool2d(q)),
                )
            }
        }
        "global_avg_pool" => r(&["input"], &[], Box::new(|_, v| v[0].global_avg_pool2d())),
        "softmax" => {
            let a = axis(&p, rank("input"));
            r(&["input"], &["axis"], Box::new(move |_, v| v[0].softmax(a)))
        }
        "log_softmax" => {
            let a = axis(&p, rank("input"));
            r(&["input"], &["axis"], Box::new(move |_, v| v[0].log_softmax(a)))
        }
        "cross_entropy" => {
            let red = match p["reduction"].as_str() {
                Some("mean") => Reduction::Mean,
                Some("sum") => Reduction::Sum,
                other => panic!("cross_entropy: unknown reduction {other:?}"),
            };
            let y = labels();
            r(&["logits"], &["reduction"], Box::new(move |_, v| v[0].cross_entropy(&y, red)))
        }
        "matmul" => r(&["a", "b"], &[], Box::new(|_, v| v[0].matmul(&v[1]))),
        "logsumexp" | "sum" | "mean" | "max" => {
            let (ax, keep) = (axes(&p), bool_param(&p, "keepdim"));
            let build: Build = match op {
                "logsumexp" => Box::new(move |_, v| v[0].logsumexp(&ax, keep)),
                "sum" => Box::new(move |_, v| v[0].sum(&ax, keep)),
                "mean" => Box::new(move |_, v| v[0].mean(&ax, keep)),
                _ => Box::new(move |_, v| v[0].max(&ax, keep)),
            };
            r(&["input"], &["axes", "keepdim"], build)
        }
        "add" => r(&["a", "b"], &[], Box::new(|_, v| v[0].add(&v[1]))),
        "mul" => r(&["a", "b"], &[], Box::new(|_, v| v[0].mul(&v[1]))),
        "div" => r(&["a", "b"], &[], Box::new(|_, v| v[0].div(&v[1]))),
        "elu" => {
            let alpha = f64_param(&p, "alpha");
            r(&["input"], &["alpha"], Box::new(move |_, v| v[0].elu(alpha)))
        }
        "sigmoid" => r(&["input"], &[], Box::new(|_, v| v[0].sigmoid())),
        "tanh" => r(&["input"], &[], Box::new(|_, v| v[0].tanh())),
        "soft_threshold" => {
            let tau = f64_param(&p, "tau");
            r(&["input"], &["tau"], Box::new(move |_, v| v[0].soft_threshold(tau)))
        }
        "pow" => {
            let e = f64_param(&p, "exponent");
            r(&["input"], &["exponent"], Box::new(move |_, v| v[0].powf(e)))
        }
        "tiny_cnn" => {
            // {"conv": "3x3 valid", "pool": 2}: x [3, 1, 8, 8] → conv2d(w1 [2, 1, 3, 3], b1),
            // no padding → [3, 2, 6, 6] → relu → max-pool 2 → [3, 2, 3, 3] → flatten [3, 18]
            // → x·w2ᵀ + b2 ([4, 18], [4]) → cross-entropy, mean over the batch.
            // Of the natural candidates (relu or not; max or average pooling; relu before or
            // after pooling; mean or sum), conv → relu → max-pool → linear → mean
            // cross-entropy is the one that gives the reference loss 13.208585772431375
            // (relu and max-pooling commute, so relu after pooling gives the same value).
            assert_eq!(p["conv"].as_str(), Some("3x3 valid"), "tiny_cnn: unexpected conv {}", p["conv"]);
            let pool = Pool2dParams::new(usize_param(&p, "pool"));
            let y = labels();
            r(
                &["x", "w1", "b1", "w2", "b2"],
                &["conv", "pool"],
                Box::new(move |_, v| {
                    let h = v[0].conv2d(&v[1], Some(&v[2]), Conv2dParams::new()).relu().max_pool2d(pool);
                    h.flatten(1, 3).matmul(&v[3].t()).add(&v[4]).cross_entropy(&y, Reduction::Mean)
                }),
            )
        }
        _ => None,
    }
}

/// Runs one case; returns a description of the first mismatch (or of a malformed case).
fn run_case(case: &Value) -> std::result::Result<(), String> {
    let op = case["op"].as_str().unwrap();
    let Some(rec) = recipe(case) else { return Err(format!("op `{op}` is not handled")) };
    let params: Vec<&String> = case["params"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    if let Some(k) = params.iter().find(|k| !rec.params.contains(&k.as_str())) {
        return Err(format!("{op}: parameter `{k}` is not handled"));
    }
    let given: Vec<&String> = case["inputs"].as_object().unwrap().keys().collect();
    if given.len() != rec.inputs.len() || given.iter().any(|k| !rec.inputs.contains(&k.as_str())) {
        return Err(format!("{op}: inputs {given:?}, expected {:?}", rec.inputs));
    }
    let grad_names: Vec<&String> = case["grads"].as_object().unwrap().keys().collect();
    if grad_names.len() != rec.inputs.len() {
        return Err(format!("{op}: gradients for {grad_names:?}, expected one per input {:?}", rec.inputs));
    }
    let inputs: Vec<Tensor<f64>> = rec.inputs.iter().map(|n| tensor(&case["inputs"][n])).collect();
    let want_out = tensor(&case["output"]);
    let cot = tensor(&case["cotangent"]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vjp(&rec.build, &inputs, Some(cot))));
    let (out, grads) = result.map_err(|_| format!("{op}: panicked (see the message above)"))?;
    let check = |what: &str, got: &Tensor<f64>, want: &Tensor<f64>| -> std::result::Result<(), String> {
        if got.shape() != want.shape() {
            return Err(format!(
                "{op} {}: {what} has shape {:?}, expected {:?}",
                case["params"],
                got.shape(),
                want.shape()
            ));
        }
        let (g, w) = (got.to_vec(), want.to_vec());
        match worst_rel(&g, &w) {
            (i, e) if e > TOL => Err(format!(
                "{op} {}: {what}: element {i} is {:.17e}, expected {:.17e} (relative error {e:.3e})",
                case["params"], g[i], w[i]
            )),
            _ => Ok(()),
        }
    };
    check("output", &out, &want_out)?;
    for (name, g) in rec.inputs.iter().zip(&grads) {
        check(&format!("gradient of {name}"), g, &tensor(&case["grads"][name]))?;
    }
    Ok(())
}

#[test]
fn every_torch_reference_case_is_reproduced_through_the_tape() {
    let path = reference_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "SKIPPED: PyTorch reference values not found at {} (set SPARSEGRAD_REFERENCE to the path of torch-ops.json)",
            path.display()
        );
        return;
    };
    let json: Value = serde_json::from_str(&text).expect("torch-ops.json is valid JSON");
    let cases = json["cases"].as_array().expect("a `cases` array");
    assert!(!cases.is_empty(), "no cases in {}", path.display());
    let failures: Vec<String> =
        cases.iter().enumerate().filter_map(|(i, c)| run_case(c).err().map(|e| format!("case {i}: {e}"))).collect();
    assert!(
        failures.is_empty(),
        "{} of {} reference cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} PyTorch reference cases reproduced to {TOL:e}", cases.len());
}

//! The convolution and pooling kernels against PyTorch (float64), from
//! `shared/reference/torch-ops.json`: for every conv2d, conv_transpose2d, max_pool2d,
//! avg_pool2d and global_avg_pool case, the forward output and the gradients of
//! `sum(R · output)` with respect to every input (the backward kernels run with `R` as
//! `grad_out`; a bias gradient is `R` summed over N, H, W). Tolerance:
//! `|ours − torch| ≤ 1e-10 · max(1, |torch|)` per element.
//!
//! The file is found through `SPARSEGRAD_REFERENCE`, else at `shared/reference/` beside the
//! workspace; when it is missing the test says so and passes without checking anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use sparsegrad_engine::{Conv2dParams, ConvTranspose2dParams, Pool2dParams, Tensor};

const TOL: f64 = 1e-10;

fn reference_path() -> PathBuf {
    match std::env::var_os("SPARSEGRAD_REFERENCE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/torch-ops.json")),
    }
}

fn tensor(v: &Value) -> Tensor<f64> {
    let shape: Vec<usize> =
        v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().expect("data").iter().map(|x| x.as_f64().unwrap()).collect();
    Tensor::from_vec(data, &shape)
}

/// A parameter given as one integer (both axes) or a pair `(h, w)`.
fn pair(v: &Value, name: &str) -> [usize; 2] {
    match v {
        Value::Number(n) => [n.as_u64().unwrap() as usize; 2],
        Value::Array(a) if a.len() == 2 => [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize],
        _ => panic!("parameter {name}: expected an integer or a pair, got {v}"),
    }
}

fn hw(t: &Tensor<f64>) -> [usize; 2] {
    [t.dim(2), t.dim(3)]
}

#[track_caller]
fn check(what: &str, got: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (a, b)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
        let excess = (a - b).abs() / b.abs().max(1.0);
        if excess > worst || excess.is_nan() {
            (worst, at) = (excess, i);
        }
    }
    assert!(
        worst <= TOL,
        "{what}: element {at} is {} but torch gives {} (relative error {worst:e})",
        got.to_vec()[at],
        want.to_vec()[at]
    );
}

/// Runs one case: returns the forward output and a gradient for every input name.
fn run(op: &str, params: &Value, inputs: &BTreeMap<String, Tensor<f64>>, r: &Tensor<f64>) -> Option<Run> {
    const OPS: [&str; 5] = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "global_avg_pool"];
    if !OPS.contains(&op) {
        return None;
    }
    let input = &inputs["input"];
    let bias_grad = || r.sum(&[0, 2, 3], false);
    let run = match op {
        "conv2d" => {
            let p = Conv2dParams::new()
                .stride2(pair(&params["stride"], "stride"))
                .padding2(pair(&params["padding"], "padding"))
                .dilation2(pair(&params["dilation"], "dilation"))
                .groups(params["groups"].as_u64().unwrap() as usize);
            let (w, b) = (&inputs["weight"], &inputs["bias"]);
            Run {
                output: input.conv2d(w, Some(b), p),
                grads: vec![
                    ("input", Tensor::conv2d_backward_input(r, w, hw(input), p)),
                    ("weight", Tensor::conv2d_backward_weight(r, input, hw(w), p)),
                    ("bias", bias_grad()),
                ],
            }
        }
        "conv_transpose2d" => {
            let p = ConvTranspose2dParams::new()
                .stride2(pair(&params["stride"], "stride"))
                .padding2(pair(&params["padding"], "padding"))
                .output_padding2(pair(&params["output_padding"], "output_padding"))
                .dilation2(pair(&params["dilation"], "dilation"))
                .groups(params["groups"].as_u64().unwrap() as usize);
            let (w, b) = (&inputs["weight"], &inputs["bias"]);
            // The documented input gradient, and the kernel that also covers output_padding ≥ stride.
            let dz = r.conv2d(w, None, p.as_conv());
            check(
                "conv_transpose2d: backward_input kernel",
                &Tensor::conv_transpose2d_backward_input(r, w, hw(input), p),
                &dz,
            );
            Run {
                output: input.conv_transpose2d(w, Some(b), p),
                grads: vec![
                    ("input", dz),
                    ("weight", Tensor::conv_transpose2d_backward_weight(input, r, hw(w), p)),
                    ("bias", bias_grad()),
                ],
            }
        }
        "max_pool2d" | "avg_pool2d" => {
            let mut p = Pool2dParams::new2(pair(&params["kernel"], "kernel"))
                .stride2(pair(&params["stride"], "stride"))
                .padding2(pair(&params["padding"], "padding"));
            let shape = [input.dim(0), input.dim(1), input.dim(2), input.dim(3)];
            if op == "max_pool2d" {
                let (output, idx) = input.max_pool2d(p);
                Run { output, grads: vec![("input", Tensor::max_pool2d_backward(r, &idx, shape))] }
            } else {
                p = p.count_include_pad(params["count_include_pad"].as_bool().unwrap());
                Run { output: input.avg_pool2d(p), grads: vec![("input", Tensor::avg_pool2d_backward(r, shape, p))] }
            }
        }
        "global_avg_pool" => Run {
            output: input.global_avg_pool2d(),
            grads: vec![("input", Tensor::global_avg_pool2d_backward(r, hw(input)))],
        },
        _ => unreachable!("{op} is not in OPS"),
    };
    Some(run)
}

struct Run {
    output: Tensor<f64>,
    grads: Vec<(&'static str, Tensor<f64>)>,
}

#[test]
fn conv_and_pool_kernels_reproduce_pytorch() {
    let path = reference_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("SKIPPED: PyTorch reference file {} not found (set SPARSEGRAD_REFERENCE)", path.display());
        return;
    };
    let doc: Value = serde_json::from_str(&text).expect("torch-ops.json is valid JSON");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (k, case) in doc["cases"].as_array().expect("cases").iter().enumerate() {
        let op = case["op"].as_str().expect("op");
        let inputs: BTreeMap<String, Tensor<f64>> =
            case["inputs"].as_object().expect("inputs").iter().map(|(name, v)| (name.clone(), tensor(v))).collect();
        let r = tensor(&case["cotangent"]);
        let Some(run) = run(op, &case["params"], &inputs, &r) else { continue };
        let what = format!("case {k} ({op}, {})", case["params"]);
        check(&format!("{what}: output"), &run.output, &tensor(&case["output"]));
        let want = case["grads"].as_object().expect("grads");
        let mut names: Vec<&str> = want.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut ours: Vec<&str> = run.grads.iter().map(|(name, _)| *name).collect();
        ours.sort_unstable();
        assert_eq!(ours, names, "{what}: gradients checked vs given");
        for (name, got) in &run.grads {
            check(&format!("{what}: gradient of {name}"), got, &tensor(&want[*name]));
        }
        *counts.entry(op.to_string()).or_default() += 1;
    }
    let expected =
        [("avg_pool2d", 3), ("conv2d", 6), ("conv_transpose2d", 5), ("global_avg_pool", 1), ("max_pool2d", 3)];
    let expected: BTreeMap<String, usize> = expected.iter().map(|&(op, n)| (op.to_string(), n)).collect();
    assert_eq!(counts, expected, "cases checked per op");
}

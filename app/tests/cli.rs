//! The `sparsegrad` binary as a user runs it: exit statuses, closed pipes, help texts.

use std::io::Read;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sparsegrad");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the sparsegrad binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args` with stdout a pipe whose reader reads one line and closes it (`| head -1`).
/// Returns the first line, the exit status and stderr.
fn first_line_then_close(args: &[&str]) -> (String, Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sparsegrad binary runs");
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    drop(out);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    (String::from_utf8_lossy(&line).into_owned(), status.code(), err)
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    for args in [&["gradcheck"][..], &["train", "--epochs", "1", "--limit", "64"], &["gradcheck", "--list"]] {
        let (line, code, err) = first_line_then_close(args);
        assert!(!line.is_empty(), "{args:?}");
        assert!(code == Some(141) || code == Some(0), "{args:?}: status {code:?}, stderr {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["train", "--threads", "100000"][..],
        &["train", "--limit", "0"],
        &["train", "--epochs", "0"],
        &["train", "--optimizer", "lbfgs"],
        &["train", "--resume"],
        &["train", "--model", "nonet"],
        &["trian"],
        &["data", "make-variations"],
        &["data", "info", "--bogus"],
        &["gradcheck", "--op", "no_such_op"],
        &["eval"],
        &["experiment", "limited-supervision", "--quick", "--set", "bogus=1"],
        &["experiment", "limited-supervision", "--quick", "--set", "trials=0"],
        &["experiment", "double-sparsity", "--quick", "--set", "steps"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error"), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
    let o = run(&["experiment", "limited-supervision", "--quick", "--set", "bogus=1"]);
    assert!(stderr(&o).contains("its fields (current values): dataset=mnist nets=lenet labels=1,10"), "{}", stderr(&o));
    // --set goes into the scripts of a cluster run, and changes the grid.
    let o = run(&["experiment", "limited-supervision", "--quick", "--set", "trials=1", "--emit-slurm", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("# 2 cells in the grid"), "{}", stdout(&o));
    assert!(stdout(&o).contains("--set 'trials=1'"), "{}", stdout(&o));
    assert!(stdout(&o).contains("limited-supervision-trials1"), "{}", stdout(&o));
    let o = run(&["trian"]);
    assert!(stderr(&o).contains("a similar subcommand exists: 'train'"), "{}", stderr(&o));
    let o = run(&["train", "--epoch", "3"]);
    assert!(stderr(&o).contains("--epochs"), "{}", stderr(&o));
    let o = run(&["train", "--threads", "100000"]);
    assert!(stderr(&o).contains("100000 threads: expected 1 to"), "{}", stderr(&o));
}

#[test]
fn help_texts() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for cmd in ["train", "eval", "inspect", "gradcheck", "data"] {
        assert!(stdout(&o).contains(cmd), "{cmd}: {}", stdout(&o));
    }
    let o = run(&["data", "make-variations", "--help"]);
    assert!(stdout(&o).contains("2 a usage error"), "{}", stdout(&o));
    let o = run(&["data", "info", "--help"]);
    assert!(stdout(&o).contains("1 when a problem is reported"), "{}", stdout(&o));
    let o = run(&["train", "--help"]);
    for opt in [
        "--model",
        "--dataset",
        "--data-dir",
        "--labels-per-class",
        "--unlabelled-weight",
        "--epochs",
        "--batch",
        "--optimizer",
        "--lr",
        "--momentum",
        "--weight-decay",
        "--seed",
        "--threads",
        "--limit",
        "--out",
        "--resume",
        "fashion-mnist",
        "mnist-rot-back-image",
        "cifar100",
        "svhn",
        "denoise",
    ] {
        assert!(stdout(&o).contains(opt), "{opt}: {}", stdout(&o));
    }
}

#[test]
fn gradcheck_help_lists_every_registered_op() {
    let list = run(&["gradcheck", "--json", "--list"]);
    assert_eq!(list.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&stdout(&list)).expect("--json --list prints JSON");
    let ops: Vec<String> =
        json["ops"].as_array().unwrap().iter().map(|o| o["op"].as_str().unwrap().to_string()).collect();
    for sparse_op in ["sf", "csf", "csc_unrolled", "csc_implicit", "dct_conv", "dcea", "poisson_nll", "sc_loss"] {
        assert!(ops.iter().any(|o| o == sparse_op), "{sparse_op} not registered: {ops:?}");
    }
    let help = stdout(&run(&["gradcheck", "--help"]));
    let words: Vec<&str> = help.split_whitespace().collect();
    for op in &ops {
        assert!(words.contains(&op.as_str()), "gradcheck --help does not list `{op}`:\n{help}");
    }
    assert!(help.contains(&format!("{} ops", ops.len())), "{help}");
}

#[test]
fn data_info_exit_status_and_pgm_images() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-cli-info-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A PGM image is listed.
    std::fs::write(dir.join("ok.pgm"), b"P5\n2 2\n255\n\x00\x40\x80\xff").unwrap();
    let o = run(&["data", "info", "--dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("ok.pgm") && stdout(&o).contains("2×2"), "{}", stdout(&o));
    // A broken MNIST file is a problem: reported, and the status says so.
    std::fs::write(dir.join("train-images-idx3-ubyte"), b"\x00\x00\x08\x03\x00\x00\x00\x05").unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), b"\x00\x00\x08\x01\x00\x00\x00\x05").unwrap();
    let o = run(&["data", "info", "--dir", dir.to_str().unwrap(), "--no-hash"]);
    assert_eq!(o.status.code(), Some(1), "stdout {}\nstderr {}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("problem:"), "{}", stdout(&o));
    // An empty directory is an error.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(run(&["data", "info", "--dir", empty.to_str().unwrap()]).status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
    // The denoise images of the shared data, when this machine has them.
    let denoise = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/denoise");
    let denoise = if denoise.is_dir() { denoise } else { std::path::PathBuf::from("/work/shared/data/denoise") };
    if denoise.is_dir() {
        let o = run(&["data", "info", "--dir", denoise.to_str().unwrap(), "--no-hash"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("cameraman.pgm"), "{}", stdout(&o));
    }
}

#[test]
fn model_list_prints_every_network_with_its_parameter_count() {
    let o = run(&["train", "--model", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("lenet") && stdout(&o).contains("431080"), "{}", stdout(&o));
}

#[test]
fn train_writes_a_json_lines_log() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-cli-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = run(&["train", "--epochs", "2", "--limit", "64", "--batch", "16", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("final test accuracy"), "{}", stdout(&o));
    // stderr is not a terminal here: plain progress lines.
    assert!(stderr(&o).contains("epoch 1/2 batch"), "{}", stderr(&o));
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[1]["epoch"], 2);
    assert!(lines[1]["test_acc"].as_f64().unwrap() > 0.0, "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoints_inspect_eval_and_resume() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-cli-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let o = run(&["train", "--epochs", "1", "--limit", "64", "--batch", "16", "--out", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["last.safetensors", "best.safetensors", "log.jsonl"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let last = dir.join("last.safetensors");
    let o = run(&["inspect", "--checkpoint", last.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("0.weight") && s.contains("[20, 1, 5, 5]") && s.contains("zeros"), "{s}");
    assert!(s.contains("  epoch = 1\n") && s.contains("net = lenet") && s.contains("momentum_buffer"), "{s}");
    let o = run(&["inspect", "--checkpoint", last.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // 8 parameters and their 8 momentum buffers
    assert_eq!(j["tensors"].as_array().unwrap().len(), 16);
    let o = run(&["eval", "--checkpoint", dir.join("best.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("accuracy") && stdout(&o).contains("/1000)"), "{}", stdout(&o));
    // --resume continues after the completed epoch.
    let o = run(&["train", "--epochs", "2", "--limit", "64", "--batch", "16", "--out", d, "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("at epoch 2, batch 0") && stdout(&o).contains("epoch  2/2"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("epoch  1/2"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(dir.join("log.jsonl")).unwrap().lines().count(), 2);
    // A broken checkpoint is an error naming the file.
    std::fs::write(dir.join("bad.safetensors"), b"0123").unwrap();
    let o = run(&["eval", "--checkpoint", dir.join("bad.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.safetensors"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn ctrl_c_finishes_the_step_writes_a_checkpoint_and_exits() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-cli-sigint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(BIN)
        .args(["train", "--epochs", "1000", "--batch", "8", "--out", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first progress line: the handler is installed and steps are running.
    let mut err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("batch") {
        assert_eq!(err.read(&mut byte).unwrap(), 1, "{}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("stopped at epoch 1, batch") && rest.contains("last.safetensors"), "{rest}");
    let o = run(&["inspect", "--checkpoint", dir.join("last.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("  epoch = 0\n") && !stdout(&o).contains("  batch = 0\n"), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn semi_supervised_training_adds_the_unsupervised_term_of_the_networks_that_have_one() {
    // K labels per class, the rest unlabelled with weight γ, on the embedded MNIST subset.
    let args = [
        "train",
        "--model",
        "sf-lenet",
        "--labels-per-class",
        "2",
        "--unlabelled-weight",
        "0.1",
        "--epochs",
        "1",
        "--limit",
        "20",
        "--batch",
        "10",
    ];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("final test accuracy"), "{}", stdout(&o));
    // γ > 0 on a network without a term: a usage error naming those that have one.
    let o = run(&["train", "--model", "lenet", "--labels-per-class", "2", "--unlabelled-weight", "0.1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for name in ["sf-lenet", "csf-lenet", "csf-sf-lenet", "dcea", "sc-convnet"] {
        assert!(stderr(&o).contains(name), "{name}: {}", stderr(&o));
    }
}

/// The script `--emit-slurm` prints, run by bash with a stand-in `sbatch` (it runs each array
/// task, then the merge, in order): the merged tables equal those of one process with the same
/// options, byte for byte. The merge must get the shards' options (`--quick`, `--set`,
/// `--budget`): it rebuilds the grid from them and refuses cells of another configuration.
#[test]
fn the_emitted_slurm_script_runs_its_shards_and_merges_them() {
    let base = std::env::temp_dir().join(format!("sg-slurm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let bin = base.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("sparsegrad")).unwrap();
    let sbatch = r#"#!/bin/bash
array=""; wrap=""
for a in "$@"; do case "$a" in --array=*) array=${a#--array=};; --wrap=*) wrap=${a#--wrap=};; esac; done
if [[ -n "$array" ]]; then
  for ((i=${array%-*}; i<=${array#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash -c "$wrap" >&2 || exit 1; done
  echo 42
else
  bash -c "$wrap" >&2
fi
"#;
    let fake = bin.join("sbatch");
    std::fs::write(&fake, sbatch).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let options = ["--quick", "--set", "trials=1", "--set", "test_images=100", "--budget", "0.2"];
    let cluster = base.join("cluster");
    let mut args = vec!["experiment", "limited-supervision"];
    args.extend(options);
    let out = cluster.to_str().unwrap();
    args.extend(["--out", out, "--emit-slurm", "2"]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = base.join("job.sh");
    std::fs::write(&script, stdout(&o)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new("bash").arg(&script).env("PATH", path).current_dir(&base).output().unwrap();
    assert!(o.status.success(), "the script failed:\n{}", stderr(&o));
    assert!(stdout(&o).contains("submitted array 42 (2 shards)"), "{}", stdout(&o));
    let single = base.join("single");
    let mut args = vec!["experiment", "limited-supervision"];
    args.extend(options);
    args.extend(["--out", single.to_str().unwrap()]);
    // From the same directory as the script: the data found (or the embedded subset) is the same.
    let o = Command::new(BIN).args(&args).current_dir(&base).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for file in ["accuracy.csv", "tables.json", "config.txt"] {
        let a = std::fs::read(single.join(file)).unwrap();
        let b = std::fs::read(cluster.join("merged").join(file)).unwrap_or_else(|e| panic!("merged/{file}: {e}"));
        assert!(a == b, "{file} differs between one process and the SLURM shards' merge");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#!/usr/bin/env bash
# Alternates bench/examples/kernel_calls.rs with its torch peer (bench/peers/kernel_calls.py),
# ROUNDS rounds of (ours 1 thread, torch 1 thread, ours 2 threads, torch 2 threads), and prints
# per case and thread count the median over rounds of torch's time / ours (> 1: we are faster),
# by median call and by mean call. On a VM whose speed drifts by ±15% within minutes, a ratio
# taken inside one round is what can be compared; a bare time is not.
#   bash bench/kernel_rounds.sh [ROUNDS=5] [OUT=target/kernel_rounds.jsonl]
set -eu
rounds=${1:-5}
out=${2:-target/kernel_rounds.jsonl}
py=${PEERS_VENV:-$HOME/.cache/sparsegrad-peers}/bin/python
cd "$(dirname "$0")/.."
cargo build --release -q -p sparsegrad-bench --features timing --example kernel_calls
: > "$out"
for r in $(seq "$rounds"); do
  for t in 1 2; do
    RAYON_NUM_THREADS=$t target/release/examples/kernel_calls | sed "s/^{/{\"round\": $r, /" >> "$out"
    "$py" bench/peers/kernel_calls.py "$t" | sed "s/^{/{\"round\": $r, /" >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    for x in r["results"]:
        by.setdefault((x["case"], r["threads"], r["round"]), {})[r["lib"]] = x
print("| case | threads | ours µs (median call) | torch µs | torch / ours, by median call | by mean call | rounds |")
print("|---|---|---|---|---|---|---|")
for case in dict.fromkeys(k[0] for k in by):
    for t in (1, 2):
        pairs = [v for (c, th, _), v in by.items() if c == case and th == t and len(v) == 2]
        if not pairs:
            continue
        med = statistics.median(p["torch"]["us_median"] / p["sparsegrad"]["us_median"] for p in pairs)
        mean = statistics.median(p["torch"]["us_mean"] / p["sparsegrad"]["us_mean"] for p in pairs)
        ours = statistics.median(p["sparsegrad"]["us_median"] for p in pairs)
        tor = statistics.median(p["torch"]["us_median"] for p in pairs)
        print(f"| {case} | {t} | {ours:.1f} | {tor:.1f} | {med:.2f} | {mean:.2f} | {len(pairs)} |")
PY

#!/usr/bin/env bash
# The "sparse II" measurement session: the CSC layer (fista_csc.py), the spatial-contrasting
# loss (sc_loss.py) and DCEA (dcea.py), every Rust program a plain one (no global allocator)
# beside the sparsegrad benches and examples of the same workloads, then the tables of
# bench/README.md ("sparse II" section) via bench/report_sparse.py.
#
# Usage: bash bench/run_sparse_benches.sh OUT_DIR     (OUT_DIR outside the repository)
# Needs: the peers' venv ($PEERS_VENV, default ~/.cache/sparsegrad-peers) and cargo. About 25
#        minutes on 2 vCPUs (DCEA in PyTorch alone takes 3). SKIP="dcea memory" skips parts.
# Writes: OUT_DIR/{fista_csc,fista_csc_after,sc_loss,sc_loss_after,dcea}.json,
#         bench_*.txt and criterion*/ (criterion), dcea_timing.txt, csc_memory.txt,
#         csc_accuracy.txt, report.md, log.txt (with the load average at every step).
set -euo pipefail
out="$(mkdir -p "$1" && cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
peers="${PEERS_DIR:-$(cd "$root/../shared/peers" && pwd)}"
py="${PEERS_VENV:-$HOME/.cache/sparsegrad-peers}/bin/python"
skip="${SKIP:-}"
crit=(--warm-up-time 1 --measurement-time 3)
if [[ ! -x "$py" ]]; then
  echo "run_sparse_benches.sh: no peers' Python at $py: run 'bash ../shared/peers/setup.sh' (or set PEERS_VENV)" >&2
  exit 2
fi
log() { echo "[$(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)] $*" | tee -a "$out/log.txt"; }
cd "$root"
log "session start; $(uname -srm); $(nproc) CPUs; commit $(git rev-parse --short HEAD)"
cargo build --release -p sparsegrad-sparse --features timing --examples 2>>"$out/log.txt"
cargo bench -q -p sparsegrad-bench --bench csc --bench sc_loss --no-run 2>>"$out/log.txt"
log "peers: fista_csc.py, sc_loss.py"
"$py" "$peers/fista_csc.py" --threads 1,2 >"$out/fista_csc.json"
"$py" "$peers/sc_loss.py" --threads 1,2 >"$out/sc_loss.json"
for t in 1 2; do
  for b in csc sc_loss; do
    log "sparsegrad: $b, RAYON_NUM_THREADS=$t"
    RAYON_NUM_THREADS=$t CRITERION_HOME="$out/criterion" \
      cargo bench -q -p sparsegrad-bench --bench $b -- "${crit[@]}" >>"$out/bench_$b.txt" 2>&1
  done
done
log "peers again (report.py takes the faster median)"
"$py" "$peers/sc_loss.py" --threads 1,2 >"$out/sc_loss_after.json"
"$py" "$peers/fista_csc.py" --threads 1,2 >"$out/fista_csc_after.json"
if [[ " $skip " != *" dcea "* ]]; then
  log "peers: dcea.py"; "$py" "$peers/dcea.py" --threads 1,2 >"$out/dcea.json"
  log "sparsegrad: dcea_timing"; ./target/release/examples/dcea_timing 3 1,2 >"$out/dcea_timing.txt" 2>&1
fi
if [[ " $skip " != *" memory "* ]]; then
  log "sparsegrad: csc_memory, csc_accuracy"
  ./target/release/examples/csc_memory >"$out/csc_memory.txt" 2>&1
  ./target/release/examples/csc_accuracy >"$out/csc_accuracy.txt" 2>&1
fi
python3 "$here/report_sparse.py" "$out" >"$out/report.md"
log "session end; tables in $out/report.md"

#!/usr/bin/env bash
# One measurement session: the peers (../shared/peers and bench/peers) and every sparsegrad
# bench with RAYON_NUM_THREADS=1 and 2, back to back, then the ratio tables of bench/README.md.
#
# Usage: bash bench/run_benches.sh OUT_DIR        (OUT_DIR outside the repository)
# Needs: the peers' venv ($PEERS_VENV, default ~/.cache/sparsegrad-peers; ../shared/peers/setup.sh)
#        and cargo. About 40 minutes on 2 vCPUs. Skip parts with SKIP="peers candle malloc";
#        choose the peer scripts with PEERS="gemm lenet_step ceiling kernels lars" and the
#        sparsegrad benches with BENCHES="matmul conv elementwise reduce tape lenet_step lars"
#        (the defaults: all), e.g. PEERS=lars BENCHES=lars SKIP="candle malloc" for LARS alone.
# On a shared machine the GEMM and kernel peers run twice, before and after the sparsegrad
# benches (gemm.json / gemm_after.json, kernels.json / kernels_after.json): report.py takes
# the faster of the two medians, so a peer measured in a busy moment does not flatter us.
# Writes: OUT_DIR/{gemm,gemm_after,lenet_step,ceiling,kernels,kernels_after,lars}.json,
#         candle.jsonl, lenet_step_malloc.json, lars_sparsegrad_t{1,2}.json (the lars bench's
#         active-set sizes), criterion/ and criterion-malloc/ (criterion's output), report.md,
#         log.txt (with the load average at every step).
set -euo pipefail
out="$(mkdir -p "$1" && cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
peers="${PEERS_DIR:-$(cd "$root/../shared/peers" && pwd)}"
venv="${PEERS_VENV:-$HOME/.cache/sparsegrad-peers}"
py="$venv/bin/python"
skip="${SKIP:-}"
peer_list=" ${PEERS:-gemm lenet_step ceiling kernels lars} "
bench_list="${BENCHES:-matmul conv elementwise reduce tape lenet_step lars}"
crit=(--warm-up-time 1 --measurement-time 3)
# glibc settings for the "allocator" rows: keep freed memory instead of returning it to the
# kernel after every step (see bench/README.md, "Where the LeNet step's time goes").
malloc_env=(MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_MMAP_THRESHOLD_=33554432)
log() { echo "[$(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)] $*" | tee -a "$out/log.txt"; }

log "session start; $(uname -srm); $(nproc) CPUs; commit $(git -C "$root" rev-parse --short HEAD)"
cd "$root"
cargo bench -q -p sparsegrad-bench --no-run 2>>"$out/log.txt"

if [[ " $skip " != *" peers "* ]]; then
  for p in gemm lenet_step ceiling kernels lars; do
    [[ "$peer_list" == *" $p "* ]] || continue
    log "peers: $p.py"
    case $p in
      ceiling) "$py" "$peers/ceiling.py" >"$out/ceiling.json" ;;
      kernels) "$py" "$here/peers/kernels.py" --threads 1,2 >"$out/kernels.json" ;;
      *) "$py" "$peers/$p.py" --threads 1,2 >"$out/$p.json" ;;
    esac
  done
fi
if [[ " $skip " != *" candle "* ]]; then
  # run.sh builds in its own directory, which is read-only under ../shared: run a copy.
  rm -rf "$out/rust" && cp -r "$peers/rust" "$out/rust" && chmod -R u+w "$out/rust"
  log "peers: candle"
  (unset CARGO_TARGET_DIR; bash "$out/rust/run.sh" candle >"$out/candle.jsonl" 2>>"$out/log.txt")
fi

for t in 1 2; do
  for b in $bench_list; do
    log "sparsegrad: $b, RAYON_NUM_THREADS=$t"
    # The lars bench also writes the mean active-set sizes of its cases (report.py's tables).
    LARS_STATS="$out/lars_sparsegrad_t$t.json" RAYON_NUM_THREADS=$t CRITERION_HOME="$out/criterion" \
      cargo bench -q -p sparsegrad-bench --bench "$b" -- "${crit[@]}" >>"$out/log.txt" 2>&1
  done
done

if [[ " $skip " != *" peers "* ]]; then
  if [[ "$peer_list" == *" gemm "* ]]; then
    log "peers again: gemm.py"; "$py" "$peers/gemm.py" --threads 1,2 >"$out/gemm_after.json"
  fi
  if [[ "$peer_list" == *" kernels "* ]]; then
    log "peers again: kernels.py"; "$py" "$here/peers/kernels.py" --threads 1,2 >"$out/kernels_after.json"
  fi
fi

extra=()
if [[ " $skip " != *" malloc "* && " $bench_list " == *" lenet_step "* ]]; then
  for t in 1 2; do
    log "sparsegrad: lenet_step with ${malloc_env[*]}, RAYON_NUM_THREADS=$t"
    env "${malloc_env[@]}" RAYON_NUM_THREADS=$t CRITERION_HOME="$out/criterion-malloc" \
      cargo bench -q -p sparsegrad-bench --bench lenet_step -- "${crit[@]}" >>"$out/log.txt" 2>&1
  done
  log "peers: lenet_step.py --libs torch with ${malloc_env[*]}"
  env "${malloc_env[@]}" "$py" "$peers/lenet_step.py" --threads 1,2 --libs torch >"$out/lenet_step_malloc.json"
  extra=(--label "glibc ${malloc_env[*]}=$out/criterion-malloc:$out/lenet_step_malloc.json")
fi
log "session end"
python3 "$here/report.py" "$out/criterion" "$out" "${extra[@]}" >"$out/report.md"
log "tables in $out/report.md"

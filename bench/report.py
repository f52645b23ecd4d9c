#!/usr/bin/env python3
"""Turns criterion results and the peers' JSON into the ratio tables of bench/README.md.

Usage:
  python3 bench/report.py CRITERION_DIR PEERS_DIR [--label NAME=CRITERION_DIR ...]

CRITERION_DIR is criterion's output directory (CRITERION_HOME, or $CARGO_TARGET_DIR/criterion);
PEERS_DIR holds the peers' JSON from the same session:
  gemm.json, lenet_step.json, ceiling.json   ../shared/peers/{gemm,lenet_step,ceiling}.py
  candle.jsonl                               ../shared/peers/rust/run.sh candle
  kernels.json                               bench/peers/kernels.py
  lars.json                                  ../shared/peers/lars.py
  lars_sparsegrad_t{1,2}.json                the lars bench's active-set sizes (LARS_STATS)
Any of them may be missing; its columns are then left out. Extra `--label NAME=DIR:PEERFILE`
adds the LeNet step measured under another configuration (e.g. an allocator setting) as extra
rows, against the lenet_step.py JSON measured under the same configuration.
Prints Markdown. Every sparsegrad time is shown beside a peer measured in the same session.
Standard library only.
"""
import json
import os
import sys


def load_criterion(root):
    """{(group, function, value): (median_ns, throughput_elements, mean_ns)}"""
    out = {}
    if not root or not os.path.isdir(root):
        return out
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        thr = (b.get("throughput") or {}).get("Elements")
        # The third field is the mean time per iteration (criterion's slope; its mean where
        # it has no slope).
        out[(b["group_id"], b["function_id"], b.get("value_str"))] = (
            e["median"]["point_estimate"], thr, (e.get("slope") or e["mean"])["point_estimate"])
    return out


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.startswith("{")]
    except OSError:
        return []


def peer_rows(doc):
    """Flattens a shared-peers JSON document into (threads, result) pairs."""
    if not doc:
        return []
    return [(r.get("threads"), x) for r in doc.get("runs", []) for x in r.get("results", [])]


def best_of(before, after):
    """Peer rows of two runs of the same script: per (threads, result key), the run with the
    smaller median time (a peer measured in a busy moment must not flatter sparsegrad)."""
    if not after:
        return before
    key = lambda th, x: (th,) + tuple(sorted((k, str(v)) for k, v in x.items()  # noqa: E731
                                            if k in ("bench", "lib", "case", "shape", "size", "n")))
    best = {}
    for th, x in before + after:
        k = key(th, x)
        if k not in best or x.get("ms_median", 1e30) < best[k][1].get("ms_median", 1e30):
            best[k] = (th, x)
    return list(best.values())


def peers_file(peers, name):
    """Rows of PEERS/name.json, combined with PEERS/name_after.json when present."""
    return best_of(peer_rows(load_json(os.path.join(peers, f"{name}.json"))),
                   peer_rows(load_json(os.path.join(peers, f"{name}_after.json"))))


def ms(ns):
    return ns / 1e6


def fmt_ms(v):
    return "–" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}")


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def gemm_table(crit, peers):
    gemm = peers_file(peers, "gemm")
    candle = [r for r in load_jsonl(os.path.join(peers, "candle.jsonl")) if r.get("bench") == "gemm"]

    def peer(lib, n, t):
        if lib == "candle":
            hit = [r for r in candle if r["n"] == n and str(r["threads"]) == str(t)]
            return hit[0]["ms_median"] if hit else None
        hit = [x for th, x in gemm if th == t and x["lib"] == lib and x["n"] == n]
        return hit[0]["ms_median"] if hit else None

    print("| n | threads | tensor ms (GFLOP/s) | tensor `a.t()` ms | raw sgemm ms (1 call, 1 thread) "
          "| tensor / raw | tensor `a.t()` / raw `a.t()` | numpy ms | torch ms | candle ms "
          "| tensor / numpy | tensor / torch | tensor / candle | throughput × torch | 2-thread speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in (1, 2):
        for n in (256, 512, 1024):
            g = f"matmul_f32_t{t}"
            get = lambda f: crit.get((g, f, str(n)))  # noqa: E731
            if not get("tensor"):
                continue
            ten, tat = ms(get("tensor")[0]), ms(get("tensor_at")[0])
            # The raw baseline is always one single-threaded call: take it from the 1-thread run.
            raw = crit.get((f"matmul_f32_t1", "raw_sgemm", str(n)))
            raw_at = crit.get((f"matmul_f32_t1", "raw_sgemm_at", str(n)))
            raw, raw_at = (ms(raw[0]) if raw else None), (ms(raw_at[0]) if raw_at else None)
            one = crit.get((f"matmul_f32_t1", "tensor", str(n)))
            speedup = ratio(ms(one[0]), ten) if one and t == 2 else "–"
            gf = 2 * n ** 3 / (ten * 1e-3) / 1e9
            npy, tor, cdl = peer("numpy", n, t), peer("torch", n, t), peer("candle", n, t)
            print(f"| {n} | {t} | {fmt_ms(ten)} ({gf:.0f}) | {fmt_ms(tat)} | {fmt_ms(raw)} | {ratio(ten, raw)} "
                  f"| {ratio(tat, raw_at)} | {fmt_ms(npy)} | {fmt_ms(tor)} | {fmt_ms(cdl)} | {ratio(ten, npy)} "
                  f"| {ratio(ten, tor)} | {ratio(ten, cdl)} | {ratio(tor, ten)} | {speedup} |")


def lenet_table(crit, peers, extra):
    candle = [r for r in load_jsonl(os.path.join(peers, "candle.jsonl")) if r.get("bench") == "lenet_step"]

    def peer(lib, b, t, ln):
        if lib == "candle":
            hit = [r for r in candle if r["batch"] == b and str(r["threads"]) == str(t)]
        else:
            hit = [x for th, x in ln if th == t and x["lib"] == lib and x["batch"] == b]
        return hit[0]["ms_median"] if hit else None

    print("| configuration | batch | threads | sparsegrad ms | torch ms | jax ms | candle ms "
          "| sparsegrad / torch | candle / sparsegrad |")
    print("|---|---|---|---|---|---|---|---|---|")
    default = peer_rows(load_json(os.path.join(peers, "lenet_step.json")))
    for label, c, ln in [("default", crit, default)] + extra:
        for t in (2, 1):
            for b in (64, 256):
                for fn in ("sgd_momentum", "sgd_momentum_in_pool"):
                    v = c.get((f"lenet_step_t{t}", fn, str(b)))
                    if not v:
                        continue
                    s = ms(v[0])
                    tor, jx, cdl = peer("torch", b, t, ln), peer("jax", b, t, ln), peer("candle", b, t, ln)
                    name = label + (", step inside the rayon pool" if fn.endswith("in_pool") else "")
                    print(f"| {name} | {b} | {t} | {fmt_ms(s)} | {fmt_ms(tor)} | {fmt_ms(jx)} | {fmt_ms(cdl)} "
                          f"| {ratio(s, tor)} | {ratio(cdl, s)} |")


def kernel_peers(peers):
    return peers_file(peers, "kernels")


def conv_table(crit, peers):
    kp = kernel_peers(peers)
    print("| shape | pass | threads | sparsegrad ms (GFLOP/s) | torch ms (GFLOP/s) | sparsegrad / torch "
          "| throughput × torch |")
    print("|---|---|---|---|---|---|---|")
    for t in (1, 2):
        g = f"conv_t{t}"
        order = {"forward": 0, "backward_input": 1, "backward_weight": 2}
        keys = sorted({(f, v) for (gg, f, v) in crit if gg == g}, key=lambda k: (k[1], order.get(k[0], 3)))
        for f, v in keys:
            ns, thr, _ = crit[(g, f, v)]
            s = ms(ns)
            hit = [x for th, x in kp if th == t and x.get("bench") == "conv" and x["shape"] == v and x["case"] == f]
            tor = hit[0]["ms_median"] if hit else None
            tgf = f" ({hit[0]['gflops_median']:.0f})" if hit else ""
            print(f"| {v} | {f} | {t} | {fmt_ms(s)} ({thr / ns:.0f}) | {fmt_ms(tor)}{tgf} | {ratio(s, tor)} "
                  f"| {ratio(tor, s)} |")


def throughput_table(crit, peers, bench):
    """Throughput from the mean time per call on both sides: criterion's slope for ours, the
    mean of single calls for the peers (their JSON's `gelem_per_s_mean`; older files without
    it fall back to the median, and the note under the table says so)."""
    kp = kernel_peers(peers)
    print("| case | size | threads | sparsegrad Gelem/s | plain Rust loop Gelem/s | naive reference Gelem/s "
          "| numpy Gelem/s | torch Gelem/s | sparsegrad / plain loop | sparsegrad / torch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    mark = {"median": False}
    for t in (1, 2):
        g = f"{bench}_t{t}"
        cases = sorted({(f, v) for (gg, f, v) in crit if gg == g and not f.endswith(("_plain_loop", "_naive"))},
                       key=lambda k: (k[1] != "1M", k[0]))
        for f, v in cases:
            def gel(fn):
                x = crit.get((g, fn, v))
                return x[1] / x[2] if x and x[1] and x[2] else None
            s, plain, naive = gel(f), gel(f + "_plain_loop"), gel(f + "_naive")

            def peer(lib):
                hit = [x for th, x in kp if th == t and x.get("bench") == bench and x["lib"] == lib
                       and x["case"] == f and x["size"] == v]
                if not hit:
                    return None
                if "gelem_per_s_mean" not in hit[0]:
                    mark["median"] = True
                return hit[0].get("gelem_per_s_mean", hit[0]["gelem_per_s"])
            npy, tor = peer("numpy"), peer("torch")
            f2 = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
            print(f"| {f} | {v} | {t} | {f2(s)} | {f2(plain)} | {f2(naive)} | {f2(npy)} | {f2(tor)} "
                  f"| {ratio(s, plain)} | {ratio(s, tor)} |")
    print()
    print("Gelem/s from the mean time per call: criterion's slope for sparsegrad, the mean of single calls "
          "for the peers" + (" (* a peer file without means: its median)" if mark["median"] else "") + ".")


def tape_table(crit, peers):
    kp = kernel_peers(peers)
    print("| case | sparsegrad ns/op (1 thread) | torch ns/op (1 thread) | torch / sparsegrad |")
    print("|---|---|---|---|")
    for f in ("record", "record_backward"):
        v = crit.get(("tape_t1", f, None))
        if not v:
            continue
        s = v[0] / v[1]
        hit = [x for th, x in kp if th == 1 and x.get("bench") == "tape" and x["case"] == f]
        tor = hit[0]["ns_per_op_median"] if hit else None
        print(f"| {f} | {s:.0f} | {'–' if tor is None else f'{tor:.0f}'} | {ratio(tor, s)} |")


def ceiling_line(peers):
    d = load_json(os.path.join(peers, "ceiling.json"))
    if not d:
        return
    h = d["host"]
    print(f"CPU: {h.get('Model name')} ({h.get('CPU(s)')} vCPU), SIMD flags: {' '.join(h.get('simd_flags', []))}; "
          f"L2 {h.get('L2 cache')}, L3 {h.get('L3 cache')}.")
    for r in d["runs"]:
        arch = ",".join(sorted({str(b.get("architecture")) for b in r.get("blas", [])}))
        print(f"- sgemm n=2048, {r['threads']} thread(s), OPENBLAS env {r['openblas_env']}: numpy "
              f"{r.get('numpy_gflops_median')} GFLOP/s (OpenBLAS kernel {arch}), torch {r.get('torch_gflops_median')}")


def lars_label(l2):
    """The lars bench's case label for λ2 (Rust prints 0.0 as "0")."""
    return "0" if l2 == 0 else f"{l2:g}"


def lars_stats(peers, t):
    return load_json(os.path.join(peers, f"lars_sparsegrad_t{t}.json")) or {}


def lars_table(crit, peers):
    lp = peer_rows(load_json(os.path.join(peers, "lars.json")))

    def peer(solver, kind, l2, t, key="ms_per_signal_median"):
        hit = [x for th, x in lp if th == t and x.get("solver") == solver and x.get("dict") == kind
               and x.get("lam2") == l2 and key in x]
        return hit[0][key] if hit else None

    n = 256
    print("ms per signal (batch of 256, m = 800, k = 500). sparsegrad: `lars_en` from D and X (G = DᵀD + λ2·I "
          "and C = X·D included, as in `spams.lasso`), and the path alone (`lars_en_gram`, G and C given, as "
          "`lars_path_gram` is given them).\n")
    print("| dictionary | λ2 | threads | sparsegrad | sparsegrad path only | SPAMS | sklearn lars_path_gram "
          "| sklearn CD (sparse_encode at λ2 = 0, ElasticNet fits at 0.01) | SPAMS / sparsegrad | lars_path_gram / sparsegrad | "
          "lars_path_gram / sparsegrad path | mean \\|Λ\\| sparsegrad / SPAMS / sklearn LARS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in (1, 2):
        st = lars_stats(peers, t)
        for kind in ("gaussian", "correlated"):
            for l2 in (0.0, 0.01):
                lab = f"{kind}_l2_{lars_label(l2)}"
                fw, pa = crit.get((f"lars_t{t}", "forward", lab)), crit.get((f"lars_t{t}", "path_only", lab))
                if not fw:
                    continue
                ours, path = ms(fw[0]) / n, (ms(pa[0]) / n if pa else None)
                sp, sk = peer("spams", kind, l2, t), peer("sk_lars_gram", kind, l2, t)
                cd = peer("sk_encode_cd", kind, l2, t) or peer("sk_cd", kind, l2, t)
                act = st.get(lab, {}).get("active_mean")
                acts = " / ".join("–" if a is None else f"{a:.2f}"
                                  for a in (act, peer("spams", kind, l2, t, "active_mean"),
                                            peer("sk_lars_gram", kind, l2, t, "active_mean")))
                f4 = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
                print(f"| {kind} | {l2:g} | {t} | {f4(ours)} | {f4(path)} | {f4(sp)} | {f4(sk)} | {f4(cd)} "
                      f"| {ratio(sp, ours)} | {ratio(sk, ours)} | {ratio(sk, path)} | {acts} |")


def sf_backward_table(crit):
    print("| dictionary | λ2 | threads | forward ms (`lars_en`, batch) | SF backward ms (Mairal, ∂D and ∂X) "
          "| backward / forward |")
    print("|---|---|---|---|---|---|")
    for t in (1, 2):
        for kind in ("gaussian", "correlated"):
            for l2 in (0.0, 0.01):
                lab = f"{kind}_l2_{lars_label(l2)}"
                fw, bw = crit.get((f"lars_t{t}", "forward", lab)), crit.get((f"lars_t{t}", "sf_backward", lab))
                if not (fw and bw):
                    continue
                print(f"| {kind} | {l2:g} | {t} | {fmt_ms(ms(fw[0]))} | {fmt_ms(ms(bw[0]))} "
                      f"| {bw[0] / fw[0]:.3f} |")


def csf_table(crit, peers):
    print("| layer (batch 64, 1×28×28 → 20×24×24, 5×5 window) | threads | sparsegrad CSF fwd+bwd ms "
          "| conv2d + bias fwd+bwd ms | CSF / conv2d | mean \\|Λ\\| of 20 | λ1 |")
    print("|---|---|---|---|---|---|---|")
    for t in (1, 2):
        st = lars_stats(peers, t)
        g = f"csf_t{t}"
        conv = [v for (gg, f, _), v in crit.items() if gg == g and f == "conv2d_forward_backward"]
        for (gg, f, v), (ns, *_) in sorted(crit.items(), key=lambda kv: str(kv[0])):
            if gg != g or f != "csf_forward_backward":
                continue
            c = ms(conv[0][0]) if conv else None
            info = st.get(f"csf_{v}", {})
            a, l1 = info.get("active_mean"), info.get("lambda1")
            frac = info.get("lambda1_fraction")
            l1s = "–" if l1 is None else f"{l1:.3f} ({frac}·mean max\\|c\\|)"
            print(f"| {v} | {t} | {fmt_ms(ms(ns))} | {fmt_ms(c)} | {ratio(ms(ns), c)} "
                  f"| {'–' if a is None else f'{a:.2f}'} | {l1s} |")


def main():
    args = sys.argv[1:]
    extra = []
    while "--label" in args:
        i = args.index("--label")
        name, _, paths = args[i + 1].rpartition("=")
        cdir, _, pfile = paths.partition(":")
        extra.append((name, load_criterion(cdir), peer_rows(load_json(pfile))))
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    crit, peers = load_criterion(args[0]), args[1]
    for title, fn in [("Machine ceiling", lambda: ceiling_line(peers)),
                      ("GEMM", lambda: gemm_table(crit, peers)),
                      ("LeNet step", lambda: lenet_table(crit, peers, extra)),
                      ("conv2d and conv_transpose2d", lambda: conv_table(crit, peers)),
                      ("Element-wise", lambda: throughput_table(crit, peers, "elementwise")),
                      ("Reductions", lambda: throughput_table(crit, peers, "reduce")),
                      ("Tape overhead", lambda: tape_table(crit, peers)),
                      ("LARS-EN sparse coding (lars.py workload)", lambda: lars_table(crit, peers)),
                      ("SF op: Mairal backward against the forward", lambda: sf_backward_table(crit)),
                      ("CSF layer against the conv2d it replaces", lambda: csf_table(crit, peers))]:
        print(f"\n### {title}\n")
        fn()


if __name__ == "__main__":
    main()

"""CPU time (not wall time) per signal of SPAMS and sklearn's lars_path_gram on the lars.py
workload, one thread: the figure a loaded shared machine disturbs least, to set beside the
CPU time `sparse/examples/lars_profile` reports for sparsegrad.

The problems are lars.py's own (`make_problem`, the same generator and seed, imported from
../shared/peers/lars.py), so the data and the mean active-set sizes are the ones lars.py
reports. Timed per solver and case: `time.process_time()` (CPU time of this process, every
thread) around one call on the whole batch, median of REPS calls after one warm-up call;
`time.perf_counter()` beside it. The process is pinned to one CPU with every BLAS/OpenMP
thread variable set to 1 (as lars.py's children are).

Run: "$PEERS_VENV"/bin/python bench/peers/lars_cpu.py [--reps 5] [--peers-dir ../shared/peers]
Prints one JSON line: {"results": [{dict, lam2, solver, cpu_ms_per_signal_median,
wall_ms_per_signal_median, active_mean}, ...]}.
"""
import argparse
import json
import os
import sys
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
          "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[v] = "1"
try:
    os.sched_setaffinity(0, {0})
except (AttributeError, OSError):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--peers-dir", default=os.path.join(here, "..", "..", "..", "shared", "peers"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.peers_dir))
    import numpy as np
    import lars as L  # the peers' lars.py: M, K, N and make_problem
    import spams
    from sklearn.linear_model import lars_path_gram

    def timed(fn):
        fn()
        cpu, wall = [], []
        for _ in range(args.reps):
            c0, w0 = time.process_time(), time.perf_counter()
            out = fn()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        return float(np.median(cpu)), float(np.median(wall)), out

    rng = np.random.default_rng(0)
    res = []
    for kind in ("gaussian", "correlated"):
        D, X, _ = L.make_problem(kind, rng)
        lam1 = float(0.1 * np.abs(D.T @ X).max(0).mean())
        Xf, Df = np.asfortranarray(X), np.asfortranarray(D)
        for lam2 in (0.0, 0.01):
            G = D.T @ D + lam2 * np.eye(L.K)
            DtX = D.T @ X

            def sp():
                return spams.lasso(Xf, D=Df, lambda1=lam1, lambda2=lam2, mode=2, numThreads=1).toarray()

            def sk():
                A = np.zeros((L.K, L.N))
                for i in range(L.N):
                    _, _, A[:, i] = lars_path_gram(DtX[:, i], G, n_samples=L.M, alpha_min=lam1 / L.M,
                                                   method="lasso", return_path=False)
                return A

            for name, fn in (("spams", sp), ("sk_lars_gram", sk)):
                cpu, wall, A = timed(fn)
                res.append({"dict": kind, "lam2": lam2, "solver": name,
                            "cpu_ms_per_signal_median": round(cpu * 1e3 / L.N, 4),
                            "wall_ms_per_signal_median": round(wall * 1e3 / L.N, 4),
                            "active_mean": round(float((np.abs(A) > 1e-10).sum(0).mean()), 2)})
    print(json.dumps({"threads": 1, "reps": args.reps, "results": res}))


if __name__ == "__main__":
    main()

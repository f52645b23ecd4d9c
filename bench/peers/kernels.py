"""Peers for the kernel-level benches in bench/benches/ (the shared peer scripts in
../shared/peers/ cover GEMM and the LeNet step only). Same workloads, same shapes:

  conv         torch conv2d forward, input gradient, weight gradient (aten.convolution_backward)
               at the LeNet batch-64 shapes, the CIFAR shape and the CSC layer's conv2d 3->64 of
               benches/conv.rs, and conv_transpose2d 64->3 (the CSC synthesis operator) with its
               two gradients; on 1 thread also the median CPU time of the calling thread
               (cpu_ms_median: what waiting for a CPU on a busy machine does not inflate)
  elementwise  numpy and torch: exp, log (of |x|), sigmoid (torch), tanh, relu, add, add
               broadcasting a row [C] / a column [R,1], on [R, 1024] f32 with R*1024 = 1M and
               16M (benches/elementwise.rs)
  reduce       numpy and torch: sum over all / last axis / first axis, max and argmax over the
               last axis; torch also amax (values only; torch.max(dim) returns the indices
               too), logsumexp, softmax and log_softmax over the last axis, on the same arrays
               (benches/reduce.rs)
  tape         torch autograd: 10,000 scalar ops x <- x*a + b, record and record+backward
               (benches/tape.rs)

Run: "$PEERS_VENV"/bin/python bench/peers/kernels.py [--threads 1,2] [--libs numpy,torch]
     [--what conv,elementwise,reduce,tape] [--quick]
Prints one JSON line, like the shared peer scripts (whose helpers it reuses: one pinned child
process per thread count, medians after warm-up).
"""
import json
import os
import sys

sys.path.insert(0, os.environ.get("PEERS_DIR", "/work/shared/peers"))
import _common as C  # noqa: E402

WHAT = "conv,elementwise,reduce,tape"
CONV_SHAPES = [
    ("lenet1_64x1x28x28_20x5x5", (64, 1, 28, 28), (20, 1, 5, 5), 0),
    ("lenet2_64x20x12x12_50x5x5", (64, 20, 12, 12), (50, 20, 5, 5), 0),
    ("lenet3_64x50x4x4_500x4x4", (64, 50, 4, 4), (500, 50, 4, 4), 0),
    ("cifar_64x64x32x32_64x3x3_p1", (64, 64, 32, 32), (64, 64, 3, 3), 1),
    ("csc_64x3x32x32_64x3x3_p1", (64, 3, 32, 32), (64, 3, 3, 3), 1),
]
# conv_transpose2d: (label, input shape, weight shape [C_in, C_out, kh, kw], padding)
CONV_T_SHAPES = [("csc_t_64x64x32x32_64x3x3_p1", (64, 64, 32, 32), (64, 3, 3, 3), 1)]
SIZES = [(1 << 20, "1M"), (1 << 24, "16M")]


def call_times(fn, reps, clock):
    """Sorted seconds of `reps` single calls of fn(), read on `clock`."""
    ts = []
    for _ in range(reps):
        c0 = clock()
        fn()
        ts.append(clock() - c0)
    ts.sort()
    return ts


def thread_cpu_ms(fn, reps):
    """Median CPU time of the calling thread per call of fn(), in ms (time.thread_time)."""
    import time
    ts = call_times(fn, reps, time.thread_time)
    return round(ts[len(ts) // 2] * 1e3, 4)


def conv(res, t, quick):
    import torch
    torch.set_num_threads(t)
    g = torch.Generator().manual_seed(0)
    mt = 0.5 if not quick else 0.05

    def record(label, case, fn, flops):
        st = C.timeit(fn, min_time=mt)
        row = {"bench": "conv", "lib": "torch", "case": case, "shape": label,
               "gflops_median": round(flops / st["median"] / 1e9, 2), **C.ms(st)}
        if t == 1:
            row["cpu_ms_median"] = thread_cpu_ms(fn, st["reps"])
        res["results"].append(row)

    for label, xs, ws, pad in CONV_SHAPES:
        x = torch.randn(xs, generator=g)
        w = torch.randn(ws, generator=g)
        b = torch.randn(ws[0], generator=g)
        y = torch.nn.functional.conv2d(x, w, b, padding=pad)
        gy = torch.randn(y.shape, generator=g)
        flops = 2 * xs[0] * ws[0] * ws[1] * ws[2] * ws[3] * y.shape[2] * y.shape[3]

        def bwd(mask):
            return torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [pad, pad], [1, 1], False,
                                                       [0, 0], 1, mask)
        cases = [("forward", lambda: torch.nn.functional.conv2d(x, w, b, padding=pad)),
                 ("backward_input", lambda: bwd([True, False, False])),
                 ("backward_weight", lambda: bwd([False, True, False]))]
        with torch.no_grad():
            for case, fn in cases:
                record(label, case, fn, flops)
    for label, zs, ws, pad in CONV_T_SHAPES:
        z = torch.randn(zs, generator=g)
        w = torch.randn(ws, generator=g)
        y = torch.nn.functional.conv_transpose2d(z, w, padding=pad)
        gy = torch.randn(y.shape, generator=g)
        # the same multiply-adds as the convolution it is the adjoint of
        flops = 2 * zs[0] * ws[0] * ws[1] * ws[2] * ws[3] * zs[2] * zs[3]

        def bwd_t(mask):
            return torch.ops.aten.convolution_backward(gy, z, w, None, [1, 1], [pad, pad], [1, 1], True,
                                                       [0, 0], 1, mask)
        cases = [("forward", lambda: torch.nn.functional.conv_transpose2d(z, w, padding=pad)),
                 ("backward_input", lambda: bwd_t([True, False, False])),
                 ("backward_weight", lambda: bwd_t([False, True, False]))]
        with torch.no_grad():
            for case, fn in cases:
                record(label, case, fn, flops)


def timeit_with_mean(fn, min_time, warmup=3, max_reps=200, min_reps=5):
    """C.timeit's statistics plus the mean time per call, whose counterpart on our side is
    criterion's slope (total time over iterations): medians of single calls and criterion's
    per-batch averages are different statistics, and a tail of slow calls (a helper thread
    preempted on a 2-vCPU VM) moves one and not the other."""
    import time
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    dt = max(time.perf_counter() - t0, 1e-7)
    reps = int(min(max_reps, max(min_reps, min_time / dt)))
    ts = call_times(fn, reps, time.perf_counter)
    n = len(ts)
    med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
    return {"median": med, "min": ts[0], "max": ts[-1], "reps": n, "mean": sum(ts) / n}


def time_cases(res, bench, lib, label, n, ops, args, mt):
    """Times every `ops[case](*args)` and records its throughput in elements of n, from the
    median and from the mean time per call."""
    for case, f in ops.items():
        st = timeit_with_mean(lambda: f(*args), min_time=mt)
        res["results"].append({"bench": bench, "lib": lib, "case": case, "size": label,
                               "gelem_per_s": round(n / st["median"] / 1e9, 3),
                               "gelem_per_s_mean": round(n / st["mean"] / 1e9, 3),
                               "ms_mean": round(st["mean"] * 1e3, 4), **C.ms(st)})


def elementwise(res, t, quick, libs):
    import numpy as np
    rng = np.random.default_rng(1)
    mt = 0.3 if not quick else 0.03
    for n, label in SIZES:
        rows, cols = n >> 10, 1024
        x = rng.standard_normal((rows, cols), dtype=np.float32)
        y = rng.standard_normal((rows, cols), dtype=np.float32)
        row = rng.standard_normal((cols,), dtype=np.float32)
        col = rng.standard_normal((rows, 1), dtype=np.float32)
        xa = np.abs(x)  # the input of log, as `x.abs()` in benches/elementwise.rs
        impls = []
        if "numpy" in libs:
            impls.append(("numpy", x, y, row, col, {
                "exp": lambda x, y, r, c: np.exp(x), "log": lambda x, y, r, c: np.log(xa),
                "tanh": lambda x, y, r, c: np.tanh(x), "relu": lambda x, y, r, c: np.maximum(x, 0),
                "add": lambda x, y, r, c: x + y, "add_bcast_row": lambda x, y, r, c: x + r,
                "add_bcast_col": lambda x, y, r, c: x + c}))
        if "torch" in libs:
            import torch
            torch.set_num_threads(t)
            tx, ty, tr, tc, txa = (torch.from_numpy(a) for a in (x, y, row, col, xa))
            impls.append(("torch", tx, ty, tr, tc, {
                "exp": lambda x, y, r, c: torch.exp(x), "log": lambda x, y, r, c: torch.log(txa),
                "sigmoid": lambda x, y, r, c: torch.sigmoid(x), "tanh": lambda x, y, r, c: torch.tanh(x),
                "relu": lambda x, y, r, c: torch.relu(x),
                "add": lambda x, y, r, c: x + y, "add_bcast_row": lambda x, y, r, c: x + r,
                "add_bcast_col": lambda x, y, r, c: x + c}))
        for lib, a, b, r, c, ops in impls:
            time_cases(res, "elementwise", lib, label, n, ops, (a, b, r, c), mt)


def reduce(res, t, quick, libs):
    import numpy as np
    rng = np.random.default_rng(2)
    mt = 0.3 if not quick else 0.03
    for n, label in SIZES:
        rows, cols = n >> 10, 1024
        x = rng.standard_normal((rows, cols), dtype=np.float32)
        impls = []
        if "numpy" in libs:
            impls.append(("numpy", x, {
                "sum_all": lambda x: x.sum(), "sum_last_axis": lambda x: x.sum(axis=1),
                "sum_first_axis": lambda x: x.sum(axis=0), "max_last_axis": lambda x: x.max(axis=1),
                "argmax_last_axis": lambda x: x.argmax(axis=1)}))
        if "torch" in libs:
            import torch
            torch.set_num_threads(t)
            impls.append(("torch", torch.from_numpy(x), {
                "sum_all": lambda x: x.sum(), "sum_last_axis": lambda x: x.sum(dim=1),
                "sum_first_axis": lambda x: x.sum(dim=0), "max_last_axis": lambda x: x.max(dim=1),
                "amax_last_axis": lambda x: torch.amax(x, dim=1),
                "argmax_last_axis": lambda x: torch.argmax(x, dim=1),
                "logsumexp_last_axis": lambda x: torch.logsumexp(x, dim=1),
                "softmax_last_axis": lambda x: torch.softmax(x, dim=1),
                "log_softmax_last_axis": lambda x: torch.log_softmax(x, dim=1)}))
        for lib, a, ops in impls:
            time_cases(res, "reduce", lib, label, n, ops, (a,), mt)


def tape(res, t, quick):
    import torch
    torch.set_num_threads(t)
    ops = 10_000

    def build():
        x0 = torch.tensor(0.5, requires_grad=True)
        a = torch.tensor(0.999, requires_grad=True)
        b = torch.tensor(0.001, requires_grad=True)
        x = x0
        for _ in range(ops // 2):
            x = x * a + b
        return x, x0

    def record():
        return build()[0].item()

    def record_backward():
        x, x0 = build()
        x.backward()
        return x0.grad.item()

    for case, fn in (("record", record), ("record_backward", record_backward)):
        st = C.timeit(fn, warmup=3, min_time=1.0 if not quick else 0.1, max_reps=50)
        res["results"].append({"bench": "tape", "lib": "torch", "case": case,
                               "ns_per_op_median": round(st["median"] / ops * 1e9, 1), **C.ms(st)})


def main():
    what = WHAT
    if "--what" in sys.argv:
        i = sys.argv.index("--what")
        what = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        os.environ["KERNELS_WHAT"] = what
    args = C.parse_args()
    if not args.child:
        C.run_parent(os.path.abspath(__file__), args, "kernels")
        return
    t = int(args.threads)
    C.child_setup(t)
    what = os.environ.get("KERNELS_WHAT", WHAT).split(",")
    libs = args.libs.split(",") if args.libs else ["numpy", "torch"]
    res = {"threads": t, "results": []}
    for name in what:
        try:
            if name == "conv" and "torch" in libs:
                conv(res, t, args.quick)
            elif name == "elementwise":
                elementwise(res, t, args.quick, libs)
            elif name == "reduce":
                reduce(res, t, args.quick, libs)
            elif name == "tape" and "torch" in libs:
                tape(res, t, args.quick)
        except Exception as e:
            res[name + "_error"] = repr(e)[:300]
    res["blas"] = C.blas_info()
    res["versions"] = C.versions()
    print(json.dumps(res))


if __name__ == "__main__":
    main()

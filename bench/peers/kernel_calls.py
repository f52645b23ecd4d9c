"""torch's side of bench/examples/kernel_calls.rs: the same 1M-element cases, timed one call
at a time for about SECONDS_PER_CASE after 20 warm-up calls; median and mean µs per call.

Run: "$PEERS_VENV"/bin/python bench/peers/kernel_calls.py THREADS [SECONDS_PER_CASE]
Prints one JSON line. bench/kernel_rounds.sh alternates it with ours.
"""
import json
import sys
import time

import torch


def timed(f, budget):
    for _ in range(20):
        f()
    ts = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(ts) < 20:
        t0 = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t0) * 1e6)
    mean = sum(ts) / len(ts)
    ts.sort()
    return ts[len(ts) // 2], mean, len(ts)


def main():
    try:
        threads = int(sys.argv[1])
        budget = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
        if threads < 1 or not budget > 0:
            raise ValueError
    except (IndexError, ValueError):
        print("usage: kernel_calls.py THREADS>=1 [SECONDS_PER_CASE>0]", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1024, 1024, generator=g)
    y = torch.randn(1024, 1024, generator=g)
    row = torch.randn(1024, generator=g)
    col = torch.randn(1024, 1, generator=g)
    xa = x.abs()
    cases = [
        ("add", lambda: x + y), ("add_bcast_row", lambda: x + row), ("add_bcast_col", lambda: x + col),
        ("relu", lambda: torch.relu(x)), ("sigmoid", lambda: torch.sigmoid(x)), ("exp", lambda: torch.exp(x)),
        ("log", lambda: torch.log(xa)), ("sum_all", lambda: x.sum()), ("sum_last_axis", lambda: x.sum(1)),
        ("softmax_last_axis", lambda: torch.softmax(x, dim=1)),
    ]
    res = []
    for name, f in cases:
        med, mean, n = timed(f, budget)
        res.append({"case": name, "us_median": round(med, 2), "us_mean": round(mean, 2), "calls": n})
    print(json.dumps({"lib": "torch", "version": torch.__version__, "threads": threads, "results": res}))


if __name__ == "__main__":
    main()

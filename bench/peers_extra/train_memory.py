"""Peak resident memory of a PyTorch training job, the peer of `sparsegrad train`:

    python train_memory.py lenet  DATA/mnist      [--limit N] [--batch 64] [--threads 1]
    python train_memory.py sdnet20 DATA/cifar-100 [--limit N] [--batch 64] [--threads 1]

Loads the training and test split the way a PyTorch user does (the whole split as one
float32 tensor, normalised), trains one epoch of SGD (momentum 0.9) at `--batch` on the first
`--limit` training images, evaluates on the whole test split (batches of 500, no_grad), and
prints the peak RSS (ru_maxrss) in MiB with the time and the test accuracy. The networks are
`../../../shared/peers/networks.py`'s (`build`), so they are the ones the step benches time.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np


def idx(path):
    import gzip
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rb") as f:
            data = f.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(d):
    xs = idx(os.path.join(d, "train-images-idx3-ubyte"))
    ys = idx(os.path.join(d, "train-labels-idx1-ubyte"))
    xt = idx(os.path.join(d, "t10k-images-idx3-ubyte"))
    yt = idx(os.path.join(d, "t10k-labels-idx1-ubyte"))
    return xs[:, None], ys, xt[:, None], yt, 10


def cifar100(d):
    def recs(name):
        r = np.fromfile(os.path.join(d, name), dtype=np.uint8).reshape(-1, 2 + 3072)
        return r[:, 2:].reshape(-1, 3, 32, 32), r[:, 1]
    for tr, te in (("train.bin", "test.bin"), ("train_first250_per_class.bin", "test_by_class.bin")):
        if os.path.exists(os.path.join(d, tr)):
            xs, ys = recs(tr)
            xt, yt = recs(te)
            return xs, ys, xt, yt, 100
    sys.exit(f"{d}: no CIFAR-100 files")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("dir")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch
    import torch.nn as nn
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../shared/peers"))
    from networks import build
    torch.set_num_threads(a.threads)
    xs, ys, xt, yt, classes = (mnist if a.net == "lenet" else cifar100)(a.dir)
    if a.limit:
        xs, ys = xs[:a.limit], ys[:a.limit]
    to = lambda x: torch.from_numpy(x.astype(np.float32) / 255.0)
    xs, xt = to(xs), to(xt)
    mean = xs.mean(dim=(0, 2, 3), keepdim=True)
    std = xs.std(dim=(0, 2, 3), keepdim=True)
    xs, xt = (xs - mean) / std, (xt - mean) / std
    ys, yt = torch.from_numpy(ys.astype(np.int64)), torch.from_numpy(yt.astype(np.int64))
    torch.manual_seed(0)
    net, _ = build(a.net, classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    t0 = time.time()
    net.train()
    perm = torch.randperm(len(xs))
    for i in range(0, len(xs) - a.batch + 1, a.batch):
        j = perm[i:i + a.batch]
        opt.zero_grad(set_to_none=True)
        lossf(net(xs[j]), ys[j]).backward()
        opt.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xt), 500):
            correct += (net(xt[i:i + 500]).argmax(1) == yt[i:i + 500]).sum().item()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__} {a.net}: {len(xs)} train images, batch {a.batch}, {a.threads} thread(s): "
          f"{time.time() - t0:.1f} s, test accuracy {100 * correct / len(xt):.2f}%, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()

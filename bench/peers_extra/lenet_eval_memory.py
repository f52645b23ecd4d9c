"""Peak resident memory of evaluating the MatConvNet MNIST LeNet (as ../shared/peers/networks.py
builds it) over the 10,000 MNIST test images under torch.no_grad(), in batches, float32, for
models/examples/lenet_eval_memory.rs. The images are read from the gzip IDX files and scaled to
[0, 1] first; the high-water mark is then reset (echo 5 > /proc/self/clear_refs) and VmHWM read
from /proc/self/status after the pass. ru_maxrss is the whole process's peak.

Run: ~/.cache/sparsegrad-peers/bin/python bench/peers_extra/lenet_eval_memory.py [batch] [threads] [DIR]
"""
import gzip
import resource
import sys

import numpy as np
import torch
import torch.nn as nn


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    root = sys.argv[3] if len(sys.argv) > 3 else "/work/shared/data/mnist"
    torch.set_num_threads(threads)
    with gzip.open(f"{root}/t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    images = torch.from_numpy(raw.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
                        nn.Conv2d(50, 500, 4), nn.ReLU(), nn.Flatten(), nn.Linear(500, 10))
    net.eval()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = "high-water mark reset after opening the data"
    except OSError:
        reset = "could NOT reset the high-water mark"
    before = status_mib("VmRSS:")
    counts = [0] * 10
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            pred = net(images[i:i + batch]).argmax(1)
            for c in pred.tolist():
                counts[c] += 1
    peak = status_mib("VmHWM:")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch {torch.__version__} no_grad batch {batch} threads {threads}: {images.shape[0]} images, peak RSS "
          f"{peak:.0f} MiB (RSS before the pass {before:.0f} MiB; {reset}); ru_maxrss {maxrss:.0f} MiB; "
          f"predicted class counts {counts}")


if __name__ == "__main__":
    main()

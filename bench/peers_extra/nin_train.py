"""Train networks.py's nin (PyTorch) on CIFAR-100 coarse the way `sparsegrad experiment
double-sparsity` does: per-channel normalised images, batch 16, N steps, test on 25 per class.
Usage: "$PEERS_VENV"/bin/python bench/peers_extra/nin_train.py OPT LR STEPS [NET]   (OPT: adam | sgd; NET: nin | ds-nin)
The data is read from $SPARSEGRAD_DATA (default ../shared/data) / cifar-100; one thread."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../shared/peers"))
import networks  # noqa: E402

torch.set_num_threads(1)
opt_name, lr, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
net_name = sys.argv[4] if len(sys.argv) > 4 else "nin"
D = os.path.join(os.environ.get("SPARSEGRAD_DATA", os.path.join(HERE, "../../../shared/data")), "cifar-100/")
def load(f):
    a = np.fromfile(D + f, dtype=np.uint8).reshape(-1, 3074)
    return a[:, 0].astype(np.int64), a[:, 2:].reshape(-1, 3, 32, 32).astype(np.float32) / 255
ytr, xtr = load("train_first250_per_class.bin")
yte, xte = load("test_by_class.bin")
m = xtr.mean(axis=(0, 2, 3), keepdims=True); s = xtr.std(axis=(0, 2, 3), keepdims=True)
xtr = (xtr - m) / s; xte = (xte - m) / s
sel = np.concatenate([np.where(yte == c)[0][:25] for c in range(20)])
xte, yte = xte[sel], yte[sel]
torch.manual_seed(0)
net, _ = networks.build(net_name, 20)
opt = torch.optim.Adam(net.parameters(), lr=lr) if opt_name == "adam" else torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
rng = np.random.default_rng(0)
lossf = nn.CrossEntropyLoss()
run = 0.0
for t in range(steps):
    idx = rng.integers(0, len(ytr), 16)
    net.train(); opt.zero_grad()
    loss = lossf(net(torch.from_numpy(xtr[idx])), torch.from_numpy(ytr[idx]))
    loss.backward(); opt.step()
    run = 0.9 * run + 0.1 * loss.item() if t else loss.item()
    if t % 100 == 0 or t == steps - 1:
        print(f"step {t} loss {loss.item():.4f} avg {run:.4f}", flush=True)
net.eval()
with torch.no_grad():
    pred = torch.cat([net(torch.from_numpy(xte[i:i+100])).argmax(1) for i in range(0, len(yte), 100)])
print(f"{net_name} {opt_name} lr={lr} steps={steps}: test acc {(pred.numpy() == yte).mean()*100:.2f}%")

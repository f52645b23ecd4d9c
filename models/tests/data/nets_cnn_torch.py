"""Torch reference forwards for models/tests/nets_cnn.rs: parameters and input from closed
formulas (so no weights are stored), logits of [2, 3, 32, 32] in eval mode (and train mode for
resnet20), written to models/tests/data/nets_cnn_torch.txt."""
import math, sys
import numpy as np
sys.path.insert(0, '/work/shared/peers')
import networks, torch

def fill(name, shape, p):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    s = np.sin(0.7 * i + 1.3 * p + 0.1)
    if len(shape) >= 2:
        v = math.sqrt(3.0 * shape[0] / n) * s
    elif name.endswith("weight"):
        v = 1.0 + 0.1 * s
    else:
        v = 0.1 * s
    return torch.from_numpy(v.astype(np.float32).reshape(shape))

x = torch.from_numpy(np.sin(0.37 * np.arange(2 * 3 * 32 * 32) + 0.2).astype(np.float32).reshape(2, 3, 32, 32))
lines = []
for name in ["resnet20", "nin", "ds-nin", "sdnet20"]:
    torch.manual_seed(0)
    net, _ = networks.build(name, 10)
    with torch.no_grad():
        for p, (n, t) in enumerate(net.named_parameters()):
            t.copy_(fill(n, list(t.shape), p))
    modes = ["eval", "train"] if name in ("resnet20", "sdnet20") else ["eval"]
    for mode in modes:
        net.train(mode == "train")
        with torch.no_grad():
            y = net(x.clone())
        lines.append(f"{name} {mode} " + " ".join(repr(float(v)) for v in y.flatten()))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
print("\n".join(l[:120] for l in lines))

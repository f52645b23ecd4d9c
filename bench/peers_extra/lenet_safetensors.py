"""The PyTorch side of the checkpoint round trip with sparsegrad, for the MNIST LeNet of
../shared/peers/networks.py (build("lenet", 10)).

  save OUT.safetensors   torch.manual_seed(0); net = build("lenet", 10);
                         safetensors.torch.save_file(net.state_dict(), OUT)
  logits FILE.safetensors  net.load_state_dict(safetensors.torch.load_file(FILE), strict=False)
                           (a sparsegrad checkpoint's optim.* and rng.state are extra keys)

Both print one JSON line: the logits of the fixed input x[i] = float32(sin(0.37 i)),
i = 0 .. 2*784-1, shaped [2, 1, 28, 28], and for `logits` the keys load_state_dict found
unexpected. app/tests/peers_checkpoint.rs runs both and compares with sparsegrad's logits.

Run: PEERS_DIR=../shared/peers python bench/peers_extra/lenet_safetensors.py save w.safetensors
(needs torch and the safetensors package).
"""
import json
import os
import sys

PEERS_DIR = os.environ.get("PEERS_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "..", "..", "shared", "peers"))
sys.path.insert(0, PEERS_DIR)


def fixed_input():
    import torch
    n = 2 * 784
    return torch.sin(torch.arange(n, dtype=torch.float64) * 0.37).float().reshape(2, 1, 28, 28)


def main():
    import torch
    from safetensors.torch import load_file, save_file
    from networks import build

    torch.set_num_threads(1)
    mode, path = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    net, _ = build("lenet", 10)
    out = {}
    if mode == "save":
        save_file(net.state_dict(), path)
    elif mode == "logits":
        res = net.load_state_dict(load_file(path), strict=False)
        if res.missing_keys:
            raise SystemExit(f"missing keys: {res.missing_keys}")
        out["unexpected"] = sorted(res.unexpected_keys)
    else:
        raise SystemExit(f"unknown mode {mode}")
    net.eval()
    with torch.no_grad():
        out["logits"] = net(fixed_input()).double().flatten().tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Peak resident memory of the DCEA Poisson denoiser's forward under torch.no_grad(), for
sparse/examples/dcea_memory.rs: the model, data and forward of ../shared/peers/dcea.py (tied,
169 filters of 11x11, stride 7 with the 49 reflect-padded shifts, T = 15, ELU_4, peak 4, one
256x256 image), float32, in a fresh process.

The step-folding power iteration runs first; the high-water mark is then reset
(echo 5 > /proc/self/clear_refs) and VmHWM read from /proc/self/status after the forward, as the
Rust example does. ru_maxrss (resource.getrusage) is the whole process's peak.

Run: ~/.cache/sparsegrad-peers/bin/python bench/peers_extra/dcea_memory.py [threads] [--quick]
"""
import os
import resource
import sys

sys.path.insert(0, "/work/shared/peers")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

K, KS, S, T, PEAK, SIZE = 169, 11, 7, 15, 4.0, 256


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    threads = int(args[0]) if args else 1
    torch.set_num_threads(threads)
    # Model and data exactly as peers/dcea.py's run_torch.
    g = torch.Generator().manual_seed(0)
    img = F.avg_pool2d(torch.rand(1, 1, SIZE + 8, SIZE + 8, generator=g), 9, stride=1)
    img = (img - img.min()) / (img.max() - img.min())
    Q = img.max() / PEAK
    y = torch.poisson(img / Q, generator=g)
    H0 = torch.randn(K, 1, KS, KS, generator=g)
    H0 = H0 / H0.flatten(1).norm(dim=1).view(K, 1, 1, 1)
    pad = S

    def shifts(x):
        out = []
        for r in range(S):
            for c in range(S):
                out.append(F.pad(x, (pad - c, pad + c, pad - r, pad + r), mode="reflect"))
        return torch.cat(out, 0)

    with torch.no_grad():
        v = torch.randn(1, K, (512 - KS) // S + 1, (512 - KS) // S + 1, generator=g)
        for _ in range(200 if not quick else 20):
            v = v / v.norm()
            v = F.conv2d(torch.exp(F.conv_transpose2d(v, H0, stride=S)), H0, stride=S)
        L = 5 * v.norm()
    H0 = H0 / L.sqrt()
    b0 = torch.full((1, K, 1, 1), 0.1)
    elu = torch.nn.ELU(alpha=PEAK)

    def forward(H, b):
        yb = shifts(y)
        x = torch.zeros(yb.shape[0], K, (yb.shape[2] - KS) // S + 1, (yb.shape[3] - KS) // S + 1)
        for _ in range(T):
            x = F.relu(x + F.conv2d(elu(yb - torch.exp(F.conv_transpose2d(x, H, stride=S))), H, stride=S) - b)
        eta = F.conv_transpose2d(x, H, stride=S)
        crops = []
        n = 0
        for r in range(S):
            for c in range(S):
                crops.append(eta[n:n + 1, :, pad - r:pad - r + SIZE, pad - c:pad - c + SIZE])
                n += 1
        return Q * torch.exp(torch.cat(crops, 0).mean(0, keepdim=True))

    init_peak = status_mib("VmHWM:")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = "high-water mark reset after init"
    except OSError:
        reset = "could NOT reset the high-water mark"
    before = status_mib("VmRSS:")
    with torch.no_grad():
        est = forward(H0, b0)
    peak = status_mib("VmHWM:")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch {torch.__version__} no_grad threads {threads}: forward peak RSS {peak:.0f} MiB (RSS before the "
          f"forward {before:.0f} MiB; {reset}); init peak {init_peak:.0f} MiB; ru_maxrss {maxrss:.0f} MiB; "
          f"sum estimate {est.sum().item():.6f}")


if __name__ == "__main__":
    main()

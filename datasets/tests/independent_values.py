#!/usr/bin/env python3
"""Independent reference values for datasets/tests/real_data.rs.

Uses only the Python standard library (gzip, struct, zlib), not the Rust readers, so the
integration tests compare two implementations. Run:

    python3 datasets/tests/independent_values.py [DATA_DIR]   # default ../shared/data

It prints, for every staged file: the record count, the label histogram and the pixel sum of
the first image. For the SVHN-layout MAT files it parses the MAT format with a small parser
written here (SciPy is not installed) and checks X against the MNIST test digits.
"""
import gzip
import os
import struct
import sys
import zlib

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")


def hist(labels, n):
    h = [0] * n
    for y in labels:
        h[y] += 1
    return h


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return dims, data[4 + 4 * nd:]


mnist_test_digits = None
for ds in ["mnist", "fashion-mnist"]:
    for split in ["train", "t10k"]:
        dims, px = idx(os.path.join(root, ds, f"{split}-images-idx3-ubyte.gz"))
        ldims, lab = idx(os.path.join(root, ds, f"{split}-labels-idx1-ubyte.gz"))
        n, r, c = dims
        first = sum(px[: r * c])
        total = sum(px)
        sq = sum(b * b for b in px) if split == "train" else None
        print(f"{ds}/{split}: n={n} dims={dims} labels={ldims[0]} first_label={lab[0]} first_sum={first} hist={hist(lab, 10)}")
        if sq is not None:
            cnt = n * r * c
            mean = total / cnt / 255
            var = sq / cnt / 255 / 255 - mean * mean
            print(f"  mean={mean!r} std={var ** 0.5!r}")
        if ds == "mnist" and split == "t10k":
            mnist_test_digits = (px, lab)

for name, rec, nclass in [
    ("cifar-10/test_batch_first20.bin", 3073, [10]),
    ("cifar-100/test_first20.bin", 3074, [20, 100]),
    ("cifar-100/test_by_class.bin", 3074, [20, 100]),
    ("cifar-100/train_first250_per_class.bin", 3074, [20, 100]),
]:
    with open(os.path.join(root, name), "rb") as f:
        data = f.read()
    n = len(data) // rec
    assert n * rec == len(data)
    nl = len(nclass)
    labels = [[data[i * rec + k] for i in range(n)] for k in range(nl)]
    first = data[nl:rec]
    chan = [sum(first[k * 1024:(k + 1) * 1024]) for k in range(3)]
    print(f"{name}: n={n} first_sum={sum(first)} first_channel_sums={chan}")
    for k in range(nl):
        h = hist(labels[k], nclass[k])
        shown = labels[k] if n <= 20 else f"first 5 {labels[k][:5]}"
        print(f"  label byte {k}: {shown} hist min/max={min(h)}/{max(h)}")


def mat_vars(path):
    """Minimal level-5 MAT reader: numeric arrays only, little-endian, returns {name: (dims, type, bytes)}."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[126:128] == b"IM"
    out = {}

    def tag(buf, off):
        t, n = struct.unpack("<II", buf[off:off + 8])
        if t >> 16:
            return t & 0xFFFF, t >> 16, off + 4, off + 8
        return t, n, off + 8, off + 8 + n + (-n % 8)

    def matrix(buf, off, end):
        _, _, d, nxt = tag(buf, off)  # flags
        _, dn, dd, nxt = tag(buf, nxt)
        dims = struct.unpack("<" + "i" * (dn // 4), buf[dd:dd + dn])
        _, nn, nd, nxt = tag(buf, nxt)
        name = buf[nd:nd + nn].decode()
        t, rn, rd, nxt = tag(buf, nxt)
        out[name] = (dims, t, buf[rd:rd + rn])

    off = 128
    while off < len(data):
        t, n = struct.unpack("<II", data[off:off + 8])
        if t == 15:
            inner = zlib.decompress(data[off + 8:off + 8 + n])
            it, inn = struct.unpack("<II", inner[:8])
            assert it == 14
            matrix(inner, 8, 8 + inn)
            off += 8 + n
        else:
            assert t == 14
            matrix(data, off + 8, off + 8 + n)
            off += 8 + n + (-n % 8)
    return out


for name in ["digits_32x32_compressed.mat", "digits_32x32_plain.mat"]:
    v = mat_vars(os.path.join(root, "svhn-format", name))
    (xd, xt, xb), (yd, yt, yb) = v["X"], v["y"]
    h, w, ch, n = xd
    if yt == 2:
        ys = list(yb)
    else:
        ys = [int(x) for x in struct.unpack("<" + "d" * n, yb)]
    labels = [y % 10 for y in ys]
    first = sum(xb[: h * w * ch])
    # X(r, c, k, i) at r + h*c + h*w*k + h*w*ch*i (column-major)
    px, lab = mnist_test_digits
    ok = True
    for i in range(n):
        for k in range(ch):
            for r in range(h):
                for c in range(w):
                    want = px[i * 784 + (r - 2) * 28 + (c - 2)] // (k + 1) if 2 <= r < 30 and 2 <= c < 30 else 0
                    if xb[r + h * c + h * w * k + h * w * ch * i] != want:
                        ok = False
    print(f"svhn-format/{name}: dims={xd} X type={xt} y type={yt} y={ys} labels={labels} first_sum={first} matches_mnist={ok} mnist_labels_match={labels == list(lab[:n])}")

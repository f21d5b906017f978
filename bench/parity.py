#!/usr/bin/python3
"""Numerical parity of nflow with the PyTorch reference (bench/torch_reference.py).

For each workload, nflow trains a model for a few steps (so that no layer sits at its identity
initialisation and ActNorm is data-initialised), writes a checkpoint, and evaluates log p of a fixed
batch (`nflow eval --out`); the reference loads the same checkpoint and computes log p of the same
batch in float64. The relative differences are printed; the run fails above --tol.

  bench/parity.py [--nflow build/nflow] [--full] [--tol 1e-4] [--make-fixture tests/fixtures/parity]
  bench/parity.py --grad-fixture tests/fixtures/parity

Without --full the models are the workloads' architectures at reduced widths (the sizes of the
committed fixture); with --full the workloads exactly. --make-fixture writes NAME.ckpt, NAME.x.csv and
NAME.logp.csv (the reference's float64 log p) for tests/test_parity.c, which runs in CI without torch,
and NAME.grad.csv: the reference's float64 gradient of the mean NLL of that batch with respect to the
parameters and the inputs (each tensor's norm and a sample of entries; torch_reference.py grad), which
test_parity compares with nflow's nf_flow_nll_grad (the CLI has no gradient output, so this comparison
lives in the C test only). --grad-fixture DIR rewrites only the NAME.grad.csv files, from the
checkpoints and batches already in DIR (no training, the committed checkpoints stay as they are).
"""
import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FM = "/usr/share/datasets/fashion-mnist/"

# name -> (nflow train arguments at reduced size, at workload size)
CASES = {
    "glow-small": (["--model", "glow", "--levels", "2", "--depth", "2", "--hidden", "16"],
                   ["--model", "glow"]),
    "realnvp-small": (["--model", "realnvp", "--hidden", "8", "--blocks", "1"],
                      ["--model", "realnvp"]),
    "nice-mnist": (["--model", "nice", "--hidden", "48"],
                   ["--model", "nice"]),
    "realnvp-moons": (["--model", "realnvp", "--depth", "8", "--hidden", "64", "--mlp-layers", "2"],
                      ["--model", "realnvp", "--depth", "8", "--hidden", "64", "--mlp-layers", "2"]),
}


def idx_images(path, n):
    with gzip.open(path, "rb") as fp:
        raw = fp.read()
    _, _, h, w = struct.unpack(">IIII", raw[:16])
    return np.frombuffer(raw[16:16 + n * h * w], dtype=np.uint8).reshape(n, h * w)


def write_idx(path, pix):
    with open(path, "wb") as fp:
        fp.write(struct.pack(">IIII", 0x803, pix.shape[0], 28, 28))
        fp.write(pix.tobytes())


def write_csv(path, x):
    with open(path, "w") as fp:
        fp.write(",".join("x%d" % (j + 1) for j in range(x.shape[1])) + "\n")
        for row in x:
            fp.write(",".join("%.9g" % v for v in row) + "\n")


def read_col(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=1)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("parity: failed: %s" % " ".join(cmd))
    return r.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nflow", default=os.path.join(HERE, "..", "build", "nflow"))
    p.add_argument("--full", action="store_true")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--make-fixture")
    p.add_argument("--grad-fixture", metavar="DIR")
    a = p.parse_args()
    if a.grad_fixture:
        for name in CASES:
            d = a.grad_fixture
            run([sys.executable, os.path.join(HERE, "torch_reference.py"), "grad", os.path.join(d, name + ".ckpt"),
                 os.path.join(d, name + ".x.csv"), os.path.join(d, name + ".grad.csv")])
            print("wrote %s" % os.path.join(d, name + ".grad.csv"))
        return
    tmp = tempfile.mkdtemp(prefix="nflow-parity-")
    rng = np.random.default_rng(7)
    train_idx, test_idx = os.path.join(tmp, "train-idx3-ubyte"), os.path.join(tmp, "test-idx3-ubyte")
    write_idx(train_idx, idx_images(FM + "train-images-idx3-ubyte.gz", 1024))
    test = idx_images(FM + "t10k-images-idx3-ubyte.gz", 64)
    write_idx(test_idx, test)
    worst = 0.0
    print("%-14s %6s %22s %22s %10s" % ("workload", "rows", "nflow log p (row 1)", "torch f64 log p", "max rel"))
    for name, (small, full) in CASES.items():
        args = full if a.full else small
        ck = os.path.join(tmp, name + ".ckpt")
        xcsv = os.path.join(tmp, name + ".x.csv")
        if name == "realnvp-moons":
            run([a.nflow, "train"] + args + ["--data", "moons", "--steps", "30", "--batch", "512", "--train-size", "4096",
                                              "--test-size", "512", "--out", ck, "--quiet"])
            x = rng.normal(size=(8, 2)).astype(np.float32)
        else:
            run([a.nflow, "train"] + args + ["--data", train_idx, "--test-data", test_idx, "--steps", "20", "--batch", "64",
                                              "--warmup", "0", "--out", ck, "--quiet", "--sample-every", "1000000"])
            u = rng.uniform(size=(8, 784))
            x = ((test[:8].astype(np.float64) + u) / 256 - 0.5).astype(np.float32)
        write_csv(xcsv, x)
        lp_n = os.path.join(tmp, name + ".logp-nflow.csv")
        lp_t = os.path.join(tmp, name + ".logp-torch.csv")
        run([a.nflow, "eval", "--model", ck, "--data", xcsv, "--out", lp_n])
        run([sys.executable, os.path.join(HERE, "torch_reference.py"), "logp", ck, xcsv, lp_t, "--double"])
        n, t = read_col(lp_n), read_col(lp_t)
        rel = float(np.max(np.abs(n - t) / np.abs(t)))
        worst = max(worst, rel)
        print("%-14s %6d %22.9g %22.9g %10.2e" % (name, len(t), n[0], t[0], rel))
        if a.make_fixture:
            os.makedirs(a.make_fixture, exist_ok=True)
            shutil.copy(ck, os.path.join(a.make_fixture, name + ".ckpt"))
            shutil.copy(xcsv, os.path.join(a.make_fixture, name + ".x.csv"))
            shutil.copy(lp_t, os.path.join(a.make_fixture, name + ".logp.csv"))
            run([sys.executable, os.path.join(HERE, "torch_reference.py"), "grad", ck, xcsv,
                 os.path.join(a.make_fixture, name + ".grad.csv")])
    shutil.rmtree(tmp)
    print("worst relative difference %.2e (tolerance %.0e)" % (worst, a.tol))
    if worst > a.tol:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

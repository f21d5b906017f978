#!/usr/bin/env python3
"""Tabular test cases with an exact density, so that KL(p || q) = E_p[log p − log q] of a trained flow q
can be measured (issue 12, item 5).

  tabular_cases.py make OUTDIR [--rows 20000] [--seed 1]
      for each case NAME: OUTDIR/NAME-train.csv, NAME-test.csv (--rows rows each, independent draws),
      NAME-test-logp.csv (the exact log p of every test row, nats) and prints the entropy
      H = −E[log p], estimated by Monte Carlo over 400 000 fresh draws, with its standard error.
  tabular_cases.py kl TRUE-LOGP.csv MODEL-LOGP.csv
      KL = mean over the test rows of (log p − log q) ± its standard error (the rows are draws of p, so
      this is an unbiased estimate of KL(p || q) — and of NLL − H — with a far smaller error than the
      difference of the two means). MODEL-LOGP.csv is what `nflow eval --model M --data NAME-test.csv
      --out FILE` writes.

The cases (8 columns each):
  mix8    a mixture of 6 Gaussians in 8 dimensions, each with its own random rotation and axis scales
          (std 0.25 to 1.6) and means spread with std 2.5: rotated, strongly correlated, multimodal.
  pairs8  4 independent pairs of strongly dependent columns (a, b): a ~ N(0, 1) and
          b | a ~ N(f(a), 0.2²) with f = 1.5·sin(2a), a²/2 − 1, 2·tanh(2a) and |a| − 0.8: the conditional
          means bend sharply, the conditional noise is small.
Only numpy (Debian's python3-numpy); run with /usr/bin/python3.
"""
import sys

import numpy as np

LOG2PI = np.log(2 * np.pi)


def _mix8(seed):
    rng = np.random.default_rng(seed)
    K, D = 6, 8
    w = rng.dirichlet(np.full(K, 5.0))
    mu = rng.normal(0, 2.5, (K, D))
    chol, logdet = [], []
    for _ in range(K):
        q, r = np.linalg.qr(rng.normal(size=(D, D)))
        q = q * np.sign(np.diag(r))
        sd = np.exp(rng.uniform(np.log(0.25), np.log(1.6), D))
        chol.append(q * sd)  # x = mu + Q diag(sd) e
        logdet.append(np.sum(np.log(sd)))
    chol, logdet = np.array(chol), np.array(logdet)

    def sample(n, r):
        k = r.choice(K, size=n, p=w)
        e = r.normal(size=(n, D))
        return mu[k] + np.einsum("nij,nj->ni", chol[k], e)

    def logp(x):
        comps = []
        for k in range(K):
            e = (x - mu[k]) @ chol[k]  # Q orthogonal: Q^T (x − mu) / sd = ((x − mu) Q) / sd
            e = e / (np.linalg.norm(chol[k], axis=0) ** 2)
            comps.append(np.log(w[k]) - logdet[k] - 0.5 * D * LOG2PI - 0.5 * np.sum(e * e, axis=1))
        return np.logaddexp.reduce(np.array(comps), axis=0)

    return sample, logp


def _pairs8(seed):
    del seed
    fs = [lambda a: 1.5 * np.sin(2 * a), lambda a: 0.5 * a * a - 1, lambda a: 2 * np.tanh(2 * a), lambda a: np.abs(a) - 0.8]
    s = 0.2

    def sample(n, r):
        cols = []
        for f in fs:
            a = r.normal(size=n)
            cols += [a, f(a) + s * r.normal(size=n)]
        return np.stack(cols, axis=1)

    def logp(x):
        lp = np.zeros(len(x))
        for j, f in enumerate(fs):
            a, b = x[:, 2 * j], x[:, 2 * j + 1]
            lp += -0.5 * (LOG2PI + a * a) - 0.5 * LOG2PI - np.log(s) - 0.5 * ((b - f(a)) / s) ** 2
        return lp

    return sample, logp


CASES = {"mix8": _mix8, "pairs8": _pairs8}


def _write(path, x, prefix):
    np.savetxt(path, x, delimiter=",", fmt="%.8g", header=",".join(f"{prefix}{j + 1}" for j in range(x.shape[1])), comments="")


def make(out, rows, seed):
    import os
    os.makedirs(out, exist_ok=True)
    for i, (name, build) in enumerate(CASES.items()):
        sample, logp = build(seed + 100 * i)
        r = np.random.default_rng(seed + 100 * i + 1)
        train, test = sample(rows, r), sample(rows, r)
        _write(f"{out}/{name}-train.csv", train, "x")
        _write(f"{out}/{name}-test.csv", test, "x")
        _write(f"{out}/{name}-test-logp.csv", logp(test)[:, None], "logp")
        big = logp(sample(400000, r))
        print(f"{name}: entropy {-big.mean():.4f} ± {big.std() / np.sqrt(len(big)):.4f} nats "
              f"(Monte Carlo, 400 000 draws); test rows: mean −log p {-logp(test).mean():.4f}")


def kl(true_csv, model_csv):
    t = np.loadtxt(true_csv, delimiter=",", skiprows=1)
    m = np.loadtxt(model_csv, delimiter=",", skiprows=1)
    if t.shape != m.shape:
        sys.exit(f"{model_csv}: {m.shape[0]} rows, {true_csv} has {t.shape[0]}")
    d = t - m
    print(f"KL {d.mean():.4f} ± {d.std() / np.sqrt(len(d)):.4f} nats  (model NLL {-m.mean():.4f}, true {-t.mean():.4f})")


def main(argv):
    if len(argv) >= 2 and argv[0] == "make":
        rows = int(argv[argv.index("--rows") + 1]) if "--rows" in argv else 20000
        seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 1
        make(argv[1], rows, seed)
    elif len(argv) == 3 and argv[0] == "kl":
        kl(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

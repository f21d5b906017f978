#!/usr/bin/env python3
"""The peer beside nflow on the tabular cases of bench/tabular_cases.py: zuko's default MAF, NSF and
RealNVP trained on the same files with the same budget and early stopping as `nflow train` on a CSV.

  PYTHONPATH=ZUKO_SRC /usr/bin/python3 bench/zuko_tabular.py DIR/NAME [--flow maf|nsf|realnvp]
      [--steps 20000] [--batch 512] [--lr 1e-3] [--eval-every 100] [--patience 20] [--seed 1]
      [--threads 1] [--dropout P] [--out LOGQ.csv]

DIR/NAME-train.csv is split as nflow splits it by default: 10 % held out as nflow's internal test part
(not used here: the test rows are DIR/NAME-test.csv), then 10 % of the rest for validation; the others
train. The columns are standardised with the training rows' mean and standard deviation (nflow's
default on a CSV; zuko's documentation asks for it), the log-density corrected by −Σ log σ. Adam
(lr 1e-3, as zuko's examples), batch 512, validation NLL every --eval-every steps, the best-validation
parameters kept, stopping after --patience evaluations without improvement. Prints train / validation /
test NLL, KL = mean(log p − log q) ± its standard error over the test rows (DIR/NAME-test-logp.csv, the
exact log p) and the wall time. The flows are zuko's defaults: zuko.flows.MAF(D) (3 affine
autoregressive transforms, MADE 64 × 2, alternating orders), zuko.flows.NSF(D) (the same with
8-bin monotone rational-quadratic splines on [−5, 5], fully autoregressive) and zuko.flows.RealNVP(D)
(3 affine couplings on alternating checkered masks, MLP 64 × 2).
--dropout P puts dropout (rate P, off in evaluation) after every hidden ReLU of the flow's networks, the
regulariser of the NSF paper's smaller UCI tables (measured here: it hurt; see README, Validation and
early stopping). Needs torch (Debian's python3-torch) and zuko's source on PYTHONPATH; nothing is installed.
"""
import argparse
import copy
import sys
import time

import numpy as np
import torch


def load(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", help="DIR/NAME: DIR/NAME-train.csv, -test.csv, -test-logp.csv")
    ap.add_argument("--flow", default="maf", choices=["maf", "nsf", "realnvp"])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0, help="dropout after every hidden activation (0: none)")
    ap.add_argument("--out", help="write log q of every test row (nats)")
    a = ap.parse_args(argv)
    import zuko

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    rows = load(a.case + "-train.csv")
    test = load(a.case + "-test.csv")
    true = load(a.case + "-test-logp.csv")[:, 0]
    rng = np.random.default_rng(a.seed)
    idx = rng.permutation(len(rows))
    n_int = int(round(0.1 * len(rows)))  # nflow's internal test part, unused here
    rest = rows[idx[n_int:]]
    n_val = int(round(0.1 * len(rest)))
    val, train = rest[:n_val], rest[n_val:]
    mu, sd = train.mean(0), train.std(0)
    logsd = float(np.log(sd).sum())
    T = lambda x: torch.tensor((x - mu) / sd, dtype=torch.float32)
    xtr, xva, xte = T(train), T(val), T(test)
    D = xtr.shape[1]
    act = None  # zuko's default (ReLU)
    if a.dropout > 0:
        act = lambda: torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Dropout(a.dropout))
    flow = {"maf": zuko.flows.MAF, "nsf": zuko.flows.NSF, "realnvp": zuko.flows.RealNVP}[a.flow](D, activation=act)
    opt = torch.optim.Adam(flow.parameters(), lr=a.lr)

    def logq(x):  # nats, in the data's units
        flow.eval()  # dropout off
        with torch.no_grad():
            return np.concatenate([flow().log_prob(x[i:i + 4096]).double().numpy() for i in range(0, len(x), 4096)]) - logsd

    best, best_step, best_state, bad, step = np.inf, 0, None, 0, 0
    perm, pos = torch.randperm(len(xtr)), 0
    while step < a.steps:
        if pos + a.batch > len(xtr):
            perm, pos = torch.randperm(len(xtr)), 0
        flow.train()
        xb = xtr[perm[pos:pos + a.batch]]
        pos += a.batch
        loss = -flow().log_prob(xb).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % a.eval_every == 0 or step == a.steps:
            v = -logq(xva).mean()
            if v < best:
                best, best_step, best_state, bad = v, step, copy.deepcopy(flow.state_dict()), 0
            else:
                bad += 1
                if a.patience and bad >= a.patience:
                    break
    flow.load_state_dict(best_state)
    lq = logq(xte)
    d = true - lq
    wall = time.time() - t0
    print(f"zuko {zuko.__version__} {a.flow} on {a.case}: {len(train)} train / {len(val)} validation / {len(test)} test rows, "
          f"{sum(p.numel() for p in flow.parameters())} parameters")
    print(f"train NLL {-logq(xtr).mean():.4f}, validation NLL {best:.4f}, test NLL {-lq.mean():.4f} nats "
          f"(model of step {best_step} of {step})")
    print(f"KL {d.mean():.4f} ± {d.std() / np.sqrt(len(d)):.4f} nats; wall {wall:.0f} s")
    if a.out:
        np.savetxt(a.out, lq[:, None], header="logp", comments="", fmt="%.8g")


if __name__ == "__main__":
    main(sys.argv[1:])

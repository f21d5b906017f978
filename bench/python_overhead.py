"""The cost of calling libnflow from Python: median wall time of Flow.log_prob on 1, 64 and 65 536 rows
against the same nf_flow_log_prob call made from C (build/nflow_python_overhead), on the same
checkpoint (the 2-D RealNVP of the CLI's defaults: 8 couplings, MLPs 2 × 64) and the same threads
(--threads, default 1: on a shared 2-core machine a 2-thread team's barriers time the neighbours).
Also the bare ctypes call (no argument checks), to split the binding's own cost from ctypes'.

    PYTHONPATH=python /usr/bin/python3 bench/python_overhead.py [--build build]
(both sides use that build's library, libnflow.so, unless NFLOW_LIBRARY names another)
Takes about 20 s. Prints a Markdown table and the CPU."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPS = {1: 3000, 64: 1000, 65536: 15}


def median_time(fn, reps):
    for _ in range(3):
        fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def cpu():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def fmt(s):
    return "%.1f µs" % (s * 1e6) if s < 1e-3 else "%.2f ms" % (s * 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a few repetitions only: checks the script, times nothing")
    a = ap.parse_args()
    # the Python side loads the same build as the C side (unless NFLOW_LIBRARY names one)
    os.environ.setdefault("NFLOW_LIBRARY", os.path.join(a.build, "libnflow.so"))
    import nflow
    from nflow import _lib
    reps_of = {n: (max(r // 100, 2) if a.quick else r) for n, r in REPS.items()}
    cbin = os.path.join(a.build, "nflow_python_overhead")
    nflow.set_threads(a.threads)
    flow = nflow.Flow("realnvp", dim=2, init_std=0.01)
    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "m.ckpt")
        flow.save(ck)
        rows = []
        for n, reps in reps_of.items():
            x = np.random.default_rng(1).standard_normal((n, 2)).astype(np.float32)
            out = np.empty(n, np.float32)
            py = median_time(lambda: flow.log_prob(x), reps)
            xp, op, fp = x.ctypes.data, out.ctypes.data, flow._ptr
            raw = median_time(lambda: _lib.lib.nf_flow_log_prob(fp, xp, op, n), reps)
            r = subprocess.run([cbin, ck, str(n), str(reps), str(a.threads)], capture_output=True, text=True, check=True)
            c = float(r.stdout.split()[1])
            rows.append((n, c, raw, py))
    print("%s, %d threads, nflow %s, Python %s, NumPy %s" % (cpu(), nflow.get_threads(), nflow.library_version(),
                                                             sys.version.split()[0], np.__version__))
    print("| rows | C nf_flow_log_prob | bare ctypes call | Flow.log_prob | Flow.log_prob − C |")
    print("|---:|---:|---:|---:|---:|")
    for n, c, raw, py in rows:
        print("| %d | %s | %s | %s | %s (%+.0f %%) |" % (n, fmt(c), fmt(raw), fmt(py), fmt(py - c), 100 * (py - c) / c))


if __name__ == "__main__":
    main()

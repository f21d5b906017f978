#!/usr/bin/python3
"""nflow and the PyTorch reference on the same workloads, in one run, with ratios.

  bench/side_by_side.py [WORKLOAD ...] [--threads 1,2] [--seconds 10] [--repeat R] [--nflow build/nflow] [--markdown FILE]

For every workload and thread count, `nflow bench` and `torch_reference.py bench` run back to back
(each in its own process, so peak memory is measured separately); the table shows both and the ratio
nflow / PyTorch. PyTorch's figure at T threads is its best T-thread setting (torch_reference.py: intra-op
and OpenBLAS threads tried in three combinations at T > 1, both 1 at T = 1). Runs on a shared machine
vary by 5-15 % (on some virtual machines by a third from one minute to the next), so only ratios measured in
one run count, and --repeat R runs each pair R times, alternating the two sides, and reports medians with
the range of the pairs' ratios.
A fair reference: where nflow reports that it corrected OpenBLAS's core (Debian's OpenBLAS 0.3.21 falls
back to SSE3 kernels on Intel models it does not know), the PyTorch process gets OPENBLAS_CORETYPE set to
the same core, as a careful user would set it; the table header names the core both ran.
--markdown writes the table (plus the machine and the command) for BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ["glow-small", "realnvp-small", "nice-mnist", "realnvp-moons"]


def run_json(cmd, path, env=None, whole=False):
    r = subprocess.run(cmd + ["--json", path], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("side_by_side: failed: %s" % " ".join(cmd))
    with open(path) as fp:
        js = json.load(fp)
    return js if whole else js["results"][0]


def torch_env(runtime):
    """The environment of the PyTorch process: OPENBLAS_CORETYPE = the core nflow runs, if nflow had to
    correct OpenBLAS's choice (its runtime line says '... core X (corrected from Y)')."""
    env = dict(os.environ)
    if "corrected from" in runtime and "OPENBLAS_CORETYPE" not in env:
        env["OPENBLAS_CORETYPE"] = runtime.split(", core ", 1)[1].split(" ", 1)[0]
    return env


def cpu_name():
    """The CPU as /proc/cpuinfo names it, with its family and model numbers (the model name alone can be as
    vague as 'AMD EPYC', which covers Zen 3, 4 and 5)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as fp:
            for line in fp:
                key, _, val = line.partition(":")
                info.setdefault(key.strip(), val.strip())
    except OSError:
        pass
    name = info.get("model name", platform.processor())
    if "cpu family" in info and "model" in info:
        name += " (family %s model %s)" % (info["cpu family"], info["model"])
    return name


def median_run(runs, key):
    """The run whose `key` is the median of runs' (the upper median for an even count), whole, so that the
    figures printed beside it (PyTorch's winning setting) are that run's own."""
    return sorted(runs, key=lambda js: js[key])[len(runs) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workloads", nargs="*", default=WORKLOADS)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", default="10")
    p.add_argument("--nflow", default=os.path.join(HERE, "..", "build", "nflow"))
    p.add_argument("--markdown")
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    if a.repeat < 1:
        raise SystemExit("side_by_side: --repeat %d: need at least 1 run per side" % a.repeat)
    # the reference needs PyTorch in this interpreter: say so before minutes of nflow's side are spent
    if subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode != 0:
        raise SystemExit("side_by_side: %s cannot import torch (Debian: apt install python3-torch, and run this "
                         "script with /usr/bin/python3)" % sys.executable)
    tmp = tempfile.mkdtemp(prefix="nflow-sbs-")
    started = time.gmtime()
    rows = []
    hdr = "| workload | threads | metric | nflow | PyTorch | nflow / PyTorch |"
    print(hdr)
    print("|---|---:|---|---:|---:|---:|")
    runtime = ""
    for w in a.workloads:
        for t in a.threads.split(","):
            ns, rs = [], []  # --repeat pairs, nflow then PyTorch each time
            for _ in range(a.repeat):
                js = run_json([a.nflow, "bench", w, "--threads", t, "--seconds", a.seconds], os.path.join(tmp, "n.json"), whole=True)
                runtime = js.get("runtime", "")
                ns.append(js["results"][0])
                rs.append(run_json([sys.executable, os.path.join(HERE, "torch_reference.py"), "bench", w, "--threads", t,
                                    "--seconds", a.seconds], os.path.join(tmp, "t.json"), env=torch_env(runtime)))
            for key, label, fmt in [("train_samples_per_s", "train samples/s", "%.1f"), ("eval_samples_per_s", "eval samples/s", "%.1f"),
                                    ("sample_samples_per_s", "sample samples/s", "%.1f"), ("peak_rss_mib", "peak RSS MiB (train)", "%.0f")]:
                # the medians of both sides, and the median of the pairs' ratios with their range
                n, r = median_run(ns, key), median_run(rs, key)
                ratios = sorted(x[key] / y[key] if y[key] else float("nan") for x, y in zip(ns, rs))
                spread = " (%.2f–%.2f×)" % (ratios[0], ratios[-1]) if len(ratios) > 1 else ""
                best = r.get("settings", {}).get(key, "")
                row = "| %s | %s | %s | %s | %s%s | %.2f×%s |" % (w, t, label, fmt % n[key], fmt % r[key],
                                                              " (%s)" % best if best and t != "1" else "",
                                                              ratios[len(ratios) // 2], spread)
                rows.append(row)
                print(row, flush=True)
            n, r = median_run(ns, "train_gflops"), median_run(rs, "train_samples_per_s")
            row = "| %s | %s | train GFLOP/s (nflow's count) | %.1f | %.1f | |" % (
                w, t, n["train_gflops"], 3 * n["forward_flops_per_sample"] * r["train_samples_per_s"] / 1e9)
            rows.append(row)
            print(row, flush=True)
    if a.markdown:
        torch_ver = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                                   text=True).stdout.strip()
        with open(a.markdown + ".tmp", "w") as fp:
            fp.write("Measured %s–%s on %s (%d logical CPUs), %s, PyTorch %s (Debian python3-torch).\n\n" % (
                time.strftime("%Y-%m-%d %H:%M", started), time.strftime("%H:%M UTC", time.gmtime()), cpu_name(), os.cpu_count(),
                platform.platform(), torch_ver))
            fp.write("nflow: %s. PyTorch's OpenBLAS: %s.\n\n" % (runtime, "OPENBLAS_CORETYPE=" + torch_env(runtime)["OPENBLAS_CORETYPE"]
                     if "OPENBLAS_CORETYPE" in torch_env(runtime) else "its own choice"))
            fp.write("Command: `bench/side_by_side.py %s --threads %s --seconds %s%s`\n\n" % (
                " ".join(a.workloads), a.threads, a.seconds, " --repeat %d" % a.repeat if a.repeat > 1 else ""))
            if a.repeat > 1:
                fp.write("Each row: the median of %d runs per side, alternating nflow and PyTorch; the ratio is the median "
                         "of the %d pairs' ratios, their range in brackets.\n\n" % (a.repeat, a.repeat))
            fp.write(hdr + "\n|---|---:|---|---:|---:|---:|\n" + "\n".join(rows) + "\n")
        os.replace(a.markdown + ".tmp", a.markdown)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""nflow and the PyTorch reference on the same workloads, in one run, with ratios.

  bench/side_by_side.py [WORKLOAD ...] [--threads 1,2] [--seconds 10] [--nflow build/nflow] [--markdown FILE]

For every workload and thread count, `nflow bench` and `torch_reference.py bench` run back to back
(each in its own process, so peak memory is measured separately); the table shows both and the ratio
nflow / PyTorch. PyTorch's figure at T threads is its best T-thread setting (torch_reference.py: intra-op
and OpenBLAS threads tried in three combinations at T > 1, both 1 at T = 1). Runs on a shared machine
vary by 5-15 %, so only ratios measured in one run count.
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workloads", nargs="*", default=WORKLOADS)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", default="10")
    p.add_argument("--nflow", default=os.path.join(HERE, "..", "build", "nflow"))
    p.add_argument("--markdown")
    a = p.parse_args()
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
            js = run_json([a.nflow, "bench", w, "--threads", t, "--seconds", a.seconds], os.path.join(tmp, "n.json"), whole=True)
            n, runtime = js["results"][0], js.get("runtime", "")
            env = torch_env(runtime)
            r = run_json([sys.executable, os.path.join(HERE, "torch_reference.py"), "bench", w, "--threads", t, "--seconds",
                          a.seconds], os.path.join(tmp, "t.json"), env=env)
            for key, label, fmt in [("train_samples_per_s", "train samples/s", "%.1f"), ("eval_samples_per_s", "eval samples/s", "%.1f"),
                                    ("sample_samples_per_s", "sample samples/s", "%.1f"), ("peak_rss_mib", "peak RSS MiB (train)", "%.0f")]:
                ratio = n[key] / r[key] if r[key] else float("nan")
                best = r.get("settings", {}).get(key, "")
                row = "| %s | %s | %s | %s | %s%s | %.2f× |" % (w, t, label, fmt % n[key], fmt % r[key],
                                                            " (%s)" % best if best and t != "1" else "", ratio)
                rows.append(row)
                print(row, flush=True)
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
            fp.write("Command: `bench/side_by_side.py %s --threads %s --seconds %s`\n\n" % (" ".join(a.workloads), a.threads, a.seconds))
            fp.write(hdr + "\n|---|---:|---|---:|---:|---:|\n" + "\n".join(rows) + "\n")
        os.replace(a.markdown + ".tmp", a.markdown)


if __name__ == "__main__":
    main()

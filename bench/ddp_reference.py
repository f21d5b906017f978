#!/usr/bin/python3
"""PyTorch DistributedDataParallel beside `mpirun -np N nflow train` (BENCHMARKS.md, "Data-parallel
training on MPI").

  ddp_reference.py WORKLOAD [--procs 2] [--seconds 8] [--json FILE]

WORKLOAD is glow-small or nice-mnist: the models of bench/torch_reference.py (the same layers, shapes and
initialisation as nflow's `nflow bench` workloads), trained by Adam 1e-3 on Fashion-MNIST with a global batch of 64
split evenly over N processes, each with one thread (torch.set_num_threads(1), OPENBLAS_NUM_THREADS=1),
talking through the gloo backend on localhost. DDP averages the gradients across processes (in buckets,
overlapped with the backward pass: its default, bucket_cap_mb=25), so one step is the same Adam step as one
process on the whole batch. Also runs 1 process with the whole batch at 1 thread, in the same run, as the
anchor. Prints and (with --json) writes images/s (whole global batches per second × 64) and ms/step over
the steady part (after 3 warm-up steps), and for DDP the time per step spent in the all-reduce measured by
a second run with the gradients' all-reduce replaced by nothing (no_sync): their difference.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import torch_reference as ref  # noqa: E402

B = 64


def steps_for(model, opt, batch, secs, sync=None, steps=0):
    """run warm-up steps, then steps until secs have passed (or exactly `steps` steps if > 0: DDP's
    processes must all run the same number, or one waits forever in an all-reduce); returns (steps, seconds)"""
    def step():
        x = batch()
        if sync is None:
            loss = -model(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        else:
            with sync():
                loss = -model(x).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
        opt.step()
    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        t = time.perf_counter() - t0
        if (steps > 0 and n == steps) or (steps <= 0 and t >= secs and n >= 5):
            return n, t


class LogProb(torch.nn.Module):
    """DDP wraps a module whose forward is the loss's input: log p of a batch"""
    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, x):
        return self.flow.log_prob(x)


def data(rank, procs):
    pix = ref.fmnist()
    g = torch.Generator().manual_seed(2)
    local = B // procs

    def batch():
        idx = torch.randint(0, pix.shape[0], (B,), generator=g)[rank * local:(rank + 1) * local]
        return (pix[idx].float() + torch.rand(local, 784, generator=g)) / 256 - 0.5
    return batch


def worker(rank, procs, w, steps, port, out):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=procs)
    torch.manual_seed(1)
    model = DDP(LogProb(ref.Flow(ref.workload_config(w))))
    batch = data(rank, procs)
    res = {}
    for name, sync in (("ddp", None), ("no_sync", model.no_sync)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        dist.barrier()
        n, t = steps_for(model, opt, batch, 0, sync, steps)
        # the job's rate is that of the slowest process
        tt = torch.tensor([t / n])
        dist.all_reduce(tt, op=dist.ReduceOp.MAX)
        res[name] = float(tt)
    if rank == 0:
        out.put(res)
    dist.destroy_process_group()


def single(w, secs):
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = LogProb(ref.Flow(ref.workload_config(w)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    n, t = steps_for(model, opt, data(0, 1), secs)
    return t / n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=["glow-small", "nice-mnist"])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--json")
    a = p.parse_args()
    if a.procs < 1 or B % a.procs:
        raise SystemExit("ddp_reference: --procs must divide the batch of %d" % B)
    one = single(a.workload, a.seconds)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    # as many steps as the single process ran in --seconds, so the DDP run lasts about as long
    steps = max(5, int(a.seconds / one))
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=worker, args=(r, a.procs, a.workload, steps, port, q)) for r in range(a.procs)]
    for pr in procs:
        pr.start()
    res = q.get()
    for pr in procs:
        pr.join()
        if pr.exitcode != 0:
            raise SystemExit("ddp_reference: a process failed (exit %d)" % pr.exitcode)
    out = dict(workload=a.workload, torch=torch.__version__, procs=a.procs,
               single_1thread_ms=1e3 * one, single_1thread_images_s=B / one,
               ddp_ms=1e3 * res["ddp"], ddp_images_s=B / res["ddp"],
               no_sync_ms=1e3 * res["no_sync"], allreduce_ms=1e3 * (res["ddp"] - res["no_sync"]))
    print("%s  PyTorch %s  1 process x 1 thread: %.1f images/s, %.1f ms/step" %
          (a.workload, torch.__version__, out["single_1thread_images_s"], out["single_1thread_ms"]))
    print("%s  DDP %d processes x 1 thread (gloo): %.1f images/s, %.1f ms/step; without the all-reduce %.1f ms/step "
          "(all-reduce %.1f ms/step)" % (a.workload, a.procs, out["ddp_images_s"], out["ddp_ms"], out["no_sync_ms"],
                                         out["allreduce_ms"]))
    if a.json:
        tmp = "%s.tmp.%d" % (a.json, os.getpid())
        with open(tmp, "w") as fp:
            json.dump(out, fp, indent=1)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch reference of nflow's benchmark workloads (../shared/design/workloads.md).

Runs with Debian's python3-torch (1.13). The models are built from an nflow config (the same
fields nflow's checkpoints carry), with nflow's tensor names, so that the reference can load an nflow
checkpoint and compute the same log-likelihoods (parity), and train from its own initialisation for
the speed comparison.

  torch_reference.py bench WORKLOAD|all [--threads 1,2] [--seconds S] [--json FILE]
      T threads means PyTorch's best T-thread setting: Debian's torch runs its own operators on an OpenMP
      pool (torch.set_num_threads) and its matrix products in OpenBLAS's separate pthread pool
      (OPENBLAS_NUM_THREADS, read when the library loads). At 1 thread both are 1. At T > 1 three
      settings run, each in a fresh process: intra-op T with BLAS 1, intra-op 1 with BLAS T, and T with T;
      each metric reports its best setting (named in the JSON), the peak memory that of the best training.
  torch_reference.py logp CKPT X.csv OUT.csv [--double]   log p (nats) of every row of X under CKPT
  torch_reference.py grad CKPT X.csv OUT.csv [--samples K]  gradient of the mean NLL of X's rows, in float64,
      with respect to every parameter and to the inputs; OUT holds a sample of it (see cmd_grad)

Direction convention as in nflow: forward is data -> latent and returns (z, log|det dz/dx|).
"""
import argparse
import gzip
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
WORKLOADS = ["glow-small", "realnvp-small", "nice-mnist", "realnvp-moons"]


# ---------------------------------------------------------------- layers
class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2), output channel c*4 + dy*2 + dx."""

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z):
        b, c, h, w = z.shape
        z = z.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return z.reshape(b, c // 4, h * 2, w * 2)


class ActNorm(nn.Module):
    """y = (x + b) * exp(logs) per channel; data-dependent init on the first training batch."""

    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c))
        self.log_scale = nn.Parameter(torch.zeros(c))
        self.register_buffer("initialized", torch.zeros(1))

    def _shape(self, x):
        return (1, -1) + (1,) * (x.dim() - 2)

    def forward(self, x):
        dims = [0] + list(range(2, x.dim()))
        if self.training and self.initialized.item() == 0:
            with torch.no_grad():
                m = x.mean(dims)
                sd = x.std(dims, unbiased=False)
                self.bias.copy_(-m)
                self.log_scale.copy_(torch.where(sd > 1e-6, -torch.log(sd + 1e-6), torch.zeros_like(sd)))
                self.initialized.fill_(1)
        s = self._shape(x)
        pix = x[0, 0].numel() if x.dim() > 2 else 1
        y = (x + self.bias.view(s)) * torch.exp(self.log_scale.view(s))
        return y, (pix * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z):
        s = self._shape(z)
        return z * torch.exp(-self.log_scale.view(s)) - self.bias.view(s)


class DiagScale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z):
        return z * torch.exp(-self.log_scale)


class InvConv1x1LU(nn.Module):
    """W = P (L + I)(U + diag(sign exp(log_s))), row r of W = row perm[r] of (L + I)(U + ...)."""

    def __init__(self, c):
        super().__init__()
        q = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))[0]
        p, lo, up = torch.linalg.lu(q)  # q = p @ lo @ up, so row r of q is row argmax(p[r]) of lo @ up
        d = torch.diagonal(up)
        self.lower = nn.Parameter(torch.tril(lo, -1).float())
        self.upper = nn.Parameter(torch.triu(up, 1).float())
        self.log_s = nn.Parameter(torch.log(d.abs()).float())
        self.register_buffer("perm", torch.argmax(p, 1).float())  # W[r] = (lo @ up)[perm[r]]
        self.register_buffer("sign", torch.sign(d).float())

    def weight(self):
        c = self.log_s.numel()
        a = torch.tril(self.lower, -1) + torch.eye(c, dtype=self.lower.dtype)
        b = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_s))
        return (a @ b)[self.perm.long()]

    def forward(self, x):
        w = self.weight()
        pix = x[0, 0].numel()
        return F.conv2d(x, w.view(*w.shape, 1, 1)), (pix * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, z):
        w = torch.inverse(self.weight())
        return F.conv2d(z, w.view(*w.shape, 1, 1))


class ZeroConv(nn.Conv2d):
    """conv3x3 starting at zero, output scaled by exp(3 logs) per channel (nflow name: net.out)."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, padding=1)
        self.weight.data.zero_()
        self.bias.data.zero_()
        self.logs = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return super().forward(x) * torch.exp(3 * self.logs).view(1, -1, 1, 1)


class GlowNet(nn.Module):
    def __init__(self, cin, cout, hidden, layers):
        super().__init__()
        c = cin
        for l in range(layers):
            k = 3 if l == 0 else 1
            conv = nn.Conv2d(c, hidden, k, padding=k // 2)
            nn.init.normal_(conv.weight, 0, 0.05)
            nn.init.zeros_(conv.bias)
            self.add_module(str(l), conv)
            c = hidden
        self.layers = layers
        self.add_module("out", ZeroConv(c, cout))

    def forward(self, x):
        for l in range(self.layers):
            x = F.relu(getattr(self, str(l))(x))
        return getattr(self, "out")(x)


class GlowCoupling(nn.Module):
    """a = first C/2 channels; (shift, raw) = net(a); b' = (b + shift) * sigmoid(raw + 2)."""

    def __init__(self, c, hidden, layers, additive=False):
        super().__init__()
        self.additive = additive
        self.na = c // 2
        self.net = GlowNet(self.na, (1 if additive else 2) * (c - self.na), hidden, layers)

    def forward(self, x):
        a, b = x[:, : self.na], x[:, self.na:]
        h = self.net(a)
        if self.additive:
            return torch.cat([a, b + h], 1), x.new_zeros(x.shape[0])
        nb = b.shape[1]
        shift, raw = h[:, :nb], h[:, nb:] + 2
        return torch.cat([a, (b + shift) * torch.sigmoid(raw)], 1), F.logsigmoid(raw).flatten(1).sum(1)

    def inverse(self, z):
        a, b = z[:, : self.na], z[:, self.na:]
        h = self.net(a)
        if self.additive:
            return torch.cat([a, b - h], 1)
        nb = b.shape[1]
        return torch.cat([a, b / torch.sigmoid(h[:, nb:] + 2) - h[:, :nb]], 1)


class Split(nn.Module):
    """z2 = last C/2 channels leave, scored by N(mean, exp(logs)) from net(z1); as nflow: a conditional
    affine map z2 -> (z2 - mean) exp(-logs) (log-det -sum logs) under the standard normal prior."""

    def __init__(self, c):
        super().__init__()
        self.na = c // 2
        self.net = GlowNet(self.na, 2 * (c - self.na), 1, 0)

    def forward(self, x):
        a, b = x[:, : self.na], x[:, self.na:]
        h = self.net(a)
        nb = b.shape[1]
        mean, logs = h[:, :nb], h[:, nb:]
        return torch.cat([a, (b - mean) * torch.exp(-logs)], 1), -logs.flatten(1).sum(1)

    def inverse(self, z):
        a, b = z[:, : self.na], z[:, self.na:]
        h = self.net(a)
        nb = b.shape[1]
        return torch.cat([a, b * torch.exp(h[:, nb:]) + h[:, :nb]], 1)


class ResNet(nn.Module):
    def __init__(self, cin, cout, width, blocks):
        super().__init__()
        self.add_module("in", nn.Conv2d(cin, width, 3, padding=1))
        self.blocks = blocks
        for b in range(blocks):
            blk = nn.Module()
            blk.conv1 = nn.Conv2d(width, width, 3, padding=1)
            blk.conv2 = nn.Conv2d(width, width, 3, padding=1)
            self.add_module(str(b), blk)
        self.out = nn.Conv2d(width, cout, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        h = F.relu(getattr(self, "in")(x))
        for b in range(self.blocks):
            blk = getattr(self, str(b))
            h = F.relu(h + blk.conv2(F.relu(blk.conv1(h))))
        return self.out(h)


class MaskedCoupling(nn.Module):
    """RealNVP: (s_raw, t) = resnet(x m); s = scale_c tanh(s_raw)(1 - m); y = x m + (1 - m)(x e^s + t)."""

    def __init__(self, c, h, w, checker, parity, width, blocks):
        super().__init__()
        if checker:
            ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            m = ((ii + jj) % 2 == parity % 2).float().expand(c, h, w)
        else:
            m = torch.zeros(c, h, w)
            if parity % 2 == 0:
                m[: c // 2] = 1
            else:
                m[c // 2:] = 1
        self.register_buffer("mask", m.unsqueeze(0).clone(), persistent=False)
        self.net = ResNet(c, 2 * c, width, blocks)
        self.scale = nn.Parameter(torch.ones(c))
        self.c = c

    def _st(self, xm):
        h = self.net(xm)
        inv = 1 - self.mask
        s = self.scale.view(1, -1, 1, 1) * torch.tanh(h[:, : self.c]) * inv
        return s, h[:, self.c:] * inv

    def forward(self, x):
        m = self.mask
        s, t = self._st(x * m)
        return x * m + (1 - m) * (x * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, z):
        m = self.mask
        s, t = self._st(z * m)
        return z * m + (1 - m) * ((z - t) * torch.exp(-s))


class Logit(nn.Module):
    """p = a + (1 - 2a)(x + 1/2), y = logit(p); log-det sum[log(1 - 2a) - log p - log(1 - p)]."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        a = self.alpha
        p = a + (1 - 2 * a) * (x + 0.5)
        lp, l1p = torch.log(p), torch.log1p(-p)
        return lp - l1p, (math.log(1 - 2 * a) - lp - l1p).flatten(1).sum(1)

    def inverse(self, z):
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha) - 0.5


class MLP(nn.Module):
    def __init__(self, din, dout, hidden, layers):
        super().__init__()
        dims = [din] + [hidden] * layers + [dout]
        for l in range(layers + 1):
            lin = nn.Linear(dims[l], dims[l + 1])
            if l == layers:
                nn.init.zeros_(lin.weight)
            else:
                nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
            self.add_module(str(l), lin)
        self.n = layers + 1

    def forward(self, x):
        for l in range(self.n):
            x = getattr(self, str(l))(x)
            if l + 1 < self.n:
                x = F.relu(x)
        return x


class VecCoupling(nn.Module):
    """Additive (NICE) or affine tanh (RealNVP) coupling on vectors; partition halves or odd/even,
    parity 1 swaps the roles of the two sets."""

    def __init__(self, d, oddeven, parity, hidden, layers, additive):
        super().__init__()
        idx = torch.arange(d)
        first = idx[idx % 2 == 0] if oddeven else idx[: d // 2]
        second = idx[idx % 2 == 1] if oddeven else idx[d // 2:]
        ia, ib = (first, second) if parity % 2 == 0 else (second, first)
        self.register_buffer("ia", ia, persistent=False)
        self.register_buffer("ib", ib, persistent=False)
        self.additive = additive
        self.net = MLP(len(ia), (1 if additive else 2) * len(ib), hidden, layers)

    def forward(self, x):
        h = self.net(x[:, self.ia])
        xb = x[:, self.ib]
        z = x.clone()
        if self.additive:
            z[:, self.ib] = xb + h
            return z, x.new_zeros(x.shape[0])
        nb = xb.shape[1]
        s = torch.tanh(h[:, :nb])
        z[:, self.ib] = xb * torch.exp(s) + h[:, nb:]
        return z, s.sum(1)

    def inverse(self, z):
        h = self.net(z[:, self.ia])
        x = z.clone()
        zb = z[:, self.ib]
        if self.additive:
            x[:, self.ib] = zb - h
            return x
        nb = zb.shape[1]
        x[:, self.ib] = (zb - h[:, nb:]) * torch.exp(-torch.tanh(h[:, :nb]))
        return x


# ---------------------------------------------------------------- models from an nflow config
class Flow(nn.Module):
    """log p(x) = log prior(z) + sum of log-dets; image models keep factored-out parts aside."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList()
        self.shapes = []  # per layer: the (C, H, W) it acts on (images) or None
        model, image = cfg["model"], cfg.get("height", 0) > 0
        C, H, W = cfg.get("channels", 0), cfg.get("height", 0), cfg.get("width", 0)
        if image and model != "nice" and cfg.get("logit_alpha", 0) > 0:
            self._add(Logit(cfg["logit_alpha"]), (C, H, W))
        if image and (cfg.get("activation", "relu") != "relu" or cfg.get("standardize")):
            raise SystemExit("torch_reference: this configuration is not part of the reference")
        if model == "glow" and image and cfg.get("lu", 1) and cfg.get("scale", "sigmoid") == "sigmoid":
            for l in range(cfg["levels"]):
                self._add(Squeeze(), (C, H, W))
                C, H, W = C * 4, H // 2, W // 2
                for _ in range(cfg["depth"]):
                    self._add(ActNorm(C), (C, H, W))
                    self._add(InvConv1x1LU(C), (C, H, W))
                    self._add(GlowCoupling(C, cfg["hidden"], cfg["layers"], cfg["coupling"] == "additive"), (C, H, W))
                if l + 1 < cfg["levels"]:
                    self._add(Split(C), (C, H, W))
                    C //= 2
        elif model == "realnvp" and image:
            wd, bl = cfg["hidden"], cfg["blocks"]
            for l in range(cfg["levels"]):
                if l + 1 == cfg["levels"]:
                    for k in range(4):
                        self._add(MaskedCoupling(C, H, W, True, k % 2, wd, bl), (C, H, W))
                    break
                for k in range(3):
                    self._add(MaskedCoupling(C, H, W, True, k % 2, wd, bl), (C, H, W))
                self._add(Squeeze(), (C, H, W))
                C, H, W = C * 4, H // 2, W // 2
                for k in range(3):
                    self._add(MaskedCoupling(C, H, W, False, k % 2, wd, bl), (C, H, W))
                C //= 2
        elif (model == "nice" or (model == "realnvp" and not image)) and not cfg.get("actnorm") and not cfg.get("batchnorm") \
                and not cfg.get("standardize") and cfg.get("perm", "none") == "none" and cfg.get("activation", "relu") == "relu" \
                and (model == "nice" or cfg.get("scale", "tanh") == "tanh"):
            d = cfg["dim"]
            oddeven = cfg["partition"] == "oddeven"
            for k in range(cfg["depth"]):
                self._add(VecCoupling(d, oddeven, k % 2, cfg["hidden"], cfg["layers"], model == "nice"), None)
            if model == "nice":
                self._add(DiagScale(d), None)
        else:
            raise SystemExit("torch_reference: this configuration is not part of the reference (%s)" % model)
        self.prior = cfg["prior"]

    def _add(self, layer, shape):
        self.layers.append(layer)
        self.shapes.append(shape)

    def log_prob(self, x):
        """x: (B, D) rows as nflow sees them."""
        B = x.shape[0]
        ld = x.new_zeros(B)
        parts = []
        if self.shapes and self.shapes[0] is not None:
            C, H, W = self.shapes[0]
            h = x.view(B, C, H, W)
        else:
            h = x
        for layer, shape in zip(self.layers, self.shapes):
            if shape is not None and h.shape[1] > shape[0]:  # factor out the channels beyond the prefix
                parts.append(h[:, shape[0]:].flatten(1))
                h = h[:, : shape[0]]
            h, d = layer(h)
            ld = ld + d
        z = torch.cat(parts[::-1] + [h.flatten(1)], 1) if parts else h.flatten(1)
        return self.prior_logp(z) + ld

    def prior_logp(self, z):
        if self.prior == "normal":
            return -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        if self.prior == "logistic":
            return -(F.softplus(z) + F.softplus(-z)).sum(1)
        raise SystemExit("torch_reference: prior %s is not part of the reference" % self.prior)

    def sample(self, n, temperature=1.0):
        D = self.cfg["dim"]
        if self.prior == "normal":
            z = torch.randn(n, D) * temperature
        else:
            u = torch.rand(n, D).clamp(1e-7, 1 - 1e-7)
            z = (torch.log(u) - torch.log1p(-u)) * temperature
        # walk back: rebuild the shapes each layer saw, re-attaching factored-out parts
        layers = list(zip(self.layers, self.shapes))
        if layers[0][1] is None:
            h = z
            for layer, _ in reversed(layers):
                h = layer.inverse(h)
            return h
        last = layers[-1][1]
        kept = last[0] * last[1] * last[2]
        h = z[:, D - kept:].view(n, *last)
        rest = z[:, : D - kept]
        for layer, shape in reversed(layers):
            if h.shape[1] < shape[0]:  # re-attach a factored-out part
                need = (shape[0] - h.shape[1]) * shape[1] * shape[2]
                part = rest[:, rest.shape[1] - need:].view(n, shape[0] - h.shape[1], shape[1], shape[2])
                rest = rest[:, : rest.shape[1] - need]
                h = torch.cat([h, part], 1)
            h = layer.inverse(h)
        return h.flatten(1)


# ---------------------------------------------------------------- nflow checkpoints (safetensors)
def read_ckpt(path):
    with open(path, "rb") as fp:
        n = struct.unpack("<Q", fp.read(8))[0]
        header = json.loads(fp.read(n))
        data = fp.read()
    meta = header.pop("__metadata__")
    tensors = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        dt = {"F32": np.float32, "F64": np.float64}[e["dtype"]]
        tensors[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(e["shape"]).copy())
    return json.loads(meta["config"]), json.loads(meta["layers"]), tensors


def load_nflow(path):
    cfg, kinds, tensors = read_ckpt(path)
    flow = Flow(cfg)
    if len(kinds) != len(flow.layers):
        raise SystemExit("%s: %d layers in the checkpoint, the reference builds %d" % (path, len(kinds), len(flow.layers)))
    state = flow.state_dict()
    for name in state:
        if name not in tensors:
            raise SystemExit("%s: tensor %s missing" % (path, name))
        state[name] = tensors[name].to(state[name].dtype).view(state[name].shape)
    flow.load_state_dict(state)
    flow.eval()
    return flow


# ---------------------------------------------------------------- workloads
def workload_config(w):
    if w == "glow-small":
        return dict(model="glow", dim=784, channels=1, height=28, width=28, levels=2, depth=8, hidden=128, layers=2,
                    coupling="affine", prior="normal")
    if w == "realnvp-small":
        return dict(model="realnvp", dim=784, channels=1, height=28, width=28, levels=2, hidden=64, blocks=4,
                    logit_alpha=0.05, prior="normal")
    if w == "nice-mnist":
        return dict(model="nice", dim=784, depth=4, hidden=1000, layers=5, partition="oddeven", prior="logistic")
    if w == "realnvp-moons":
        return dict(model="realnvp", dim=2, depth=8, hidden=64, layers=2, partition="halves", prior="normal")
    raise SystemExit("unknown workload %s" % w)


def fmnist():
    with gzip.open(FMNIST, "rb") as fp:
        raw = fp.read()
    n, h, w = struct.unpack(">III", raw[4:16])
    return torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, h * w).copy())


def moons(n, g):
    t = torch.rand(n, generator=g) * math.pi
    outer = torch.arange(n) % 2 == 1
    x = torch.where(outer, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(outer, torch.sin(t), 0.5 - torch.sin(t))
    return torch.stack([x, y], 1) + 0.05 * torch.randn(n, 2, generator=g)


def measure(w, threads, secs):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(2)
    cfg = workload_config(w)
    flow = Flow(cfg)
    image = w != "realnvp-moons"
    if image:
        pix = fmnist()
        B = 64
        def batch():
            idx = torch.randint(0, pix.shape[0], (B,), generator=g)
            return (pix[idx].float() + torch.rand(B, 784, generator=g)) / 256 - 0.5
    else:
        data = moons(100000, g)
        B = 512
        def batch():
            return data[torch.randint(0, data.shape[0], (B,), generator=g)]
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    flow.train()
    def step():
        loss = -flow.log_prob(batch()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        t = time.perf_counter() - t0
        if t >= secs and n >= 3:
            break
    train = n * B / t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    flow.eval()
    pool = [batch() for _ in range(8)]
    with torch.no_grad():
        flow.log_prob(pool[0])
        n, t0 = 0, time.perf_counter()
        while True:
            flow.log_prob(pool[n % 8])
            n += 1
            t = time.perf_counter() - t0
            if t >= secs / 2 and n >= 3:
                break
        ev = n * B / t
        flow.sample(64)
        n, t0 = 0, time.perf_counter()
        while True:
            flow.sample(64)
            n += 1
            t = time.perf_counter() - t0
            if t >= secs / 2 and n >= 3:
                break
        smp = n * 64 / t
    return dict(workload=w, threads=threads, train_samples_per_s=train, eval_samples_per_s=ev,
                sample_samples_per_s=smp, peak_rss_mib=rss, parameters=sum(p.numel() for p in flow.parameters()),
                torch=torch.__version__)


def settings(t):
    """(intra-op threads, OpenBLAS threads) pairs that use t threads"""
    return [(1, 1)] if t == 1 else [(t, 1), (1, t), (t, t)]


def run_one(w, intra, blas, secs):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(intra))
    out = subprocess.run([sys.executable, __file__, "_one", w, str(intra), str(secs)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit("torch_reference: %s at %d intra-op / %d BLAS threads failed" % (w, intra, blas))
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(runs, t):
    """one result per thread count: each speed the best over the settings, memory of the best training"""
    names = ["intra %d / blas %d" % (i, b) for (i, b), _ in runs]
    res = [r for _, r in runs]
    top = max(range(len(res)), key=lambda k: res[k]["train_samples_per_s"])
    out = dict(res[top], threads=t, settings={})
    for key in ("train_samples_per_s", "eval_samples_per_s", "sample_samples_per_s"):
        k = max(range(len(res)), key=lambda j: res[j][key])
        out[key] = res[k][key]
        out["settings"][key] = names[k]
    out["settings"]["peak_rss_mib"] = names[top]
    out["all_settings"] = [dict(r, setting=n) for n, r in zip(names, res)]
    return out


def cmd_bench(a):
    names = WORKLOADS if a.workload == "all" else [a.workload]
    threads = [int(t) for t in a.threads.split(",")]
    results = []
    print("%-14s %7s %12s %12s %12s %10s  %s" % ("workload", "threads", "train/s", "eval/s", "sample/s", "peak MiB", "best setting (train)"))
    for w in names:
        for t in threads:  # a fresh process per setting: separate peak-memory figures, BLAS threads set at load
            runs = [((i, b), run_one(w, i, b, a.seconds)) for i, b in settings(t)]
            r = best_of(runs, t)
            results.append(r)
            print("%-14s %7d %12.1f %12.1f %12.1f %10.0f  %s" % (w, t, r["train_samples_per_s"], r["eval_samples_per_s"],
                                                                r["sample_samples_per_s"], r["peak_rss_mib"],
                                                                r["settings"]["train_samples_per_s"]), flush=True)
    if a.json:
        tmp = "%s.tmp.%d" % (a.json, os.getpid())
        with open(tmp, "w") as fp:
            json.dump({"tool": "torch " + torch.__version__, "seconds": a.seconds, "results": results}, fp, indent=1)
        os.replace(tmp, a.json)


def cmd_logp(a):
    torch.set_num_threads(1)
    flow = load_nflow(a.ckpt)
    x = np.loadtxt(a.x, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    xt = torch.from_numpy(x)
    if a.double:
        flow = flow.double()
    else:
        xt = xt.float()
    with torch.no_grad():
        lp = flow.log_prob(xt).double().numpy()
    tmp = "%s.tmp.%d" % (a.out, os.getpid())
    with open(tmp, "w") as fp:
        fp.write("logp1\n")
        for v in lp:
            fp.write("%.17g\n" % v)
    os.replace(tmp, a.out)


def sample_rows(tensor, g, k):
    """CSV rows (tensor, element, grad, scale) for one gradient g (flattened, float64): its L2 norm as
    element -1, then k evenly spaced elements and the element of the largest |g|; scale = max |g|."""
    g = g.reshape(-1)
    scale = float(g.abs().max()) if g.numel() else 0.0
    idx = sorted(set(np.linspace(0, g.numel() - 1, min(k, g.numel())).round().astype(int).tolist()) |
                 {int(g.abs().argmax())})
    rows = [(tensor, -1, float(g.norm()), scale)]
    rows += [(tensor, i, float(g[i]), scale) for i in idx]
    return rows


def cmd_grad(a):
    """Gradient of loss = mean over the rows of X of −log p(x) under CKPT (float64 throughout, the
    checkpoint's float32 parameters widened), by autograd. OUT.csv: columns tensor, element, grad,
    scale. tensor = index of a parameter in the checkpoint's tensor order (nflow's tensor table) or −1
    for the inputs (element = row·D + column); per tensor one row of element −1 with the gradient's L2
    norm over ALL its entries, then --samples evenly spaced entries and the largest; scale = the largest
    |gradient| of that tensor. The first row is tensor −2, element −1: the loss itself."""
    torch.set_num_threads(1)
    flow = load_nflow(a.ckpt).double()
    with open(a.ckpt, "rb") as fp:
        n = struct.unpack("<Q", fp.read(8))[0]
        order = [k for k in json.loads(fp.read(n)) if k != "__metadata__"]
    x = torch.from_numpy(np.loadtxt(a.x, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)).requires_grad_(True)
    loss = -flow.log_prob(x).mean()
    params = dict(flow.named_parameters())
    names = [k for k in order if k in params]
    missing = [k for k in params if k not in order]
    if missing:
        raise SystemExit("%s: parameters %s are not in the checkpoint" % (a.ckpt, ", ".join(missing)))
    grads = torch.autograd.grad(loss, [params[k] for k in names] + [x])
    rows = [(-2, -1, float(loss), abs(float(loss)))]
    for k, g in zip(names, grads[:-1]):
        rows += sample_rows(order.index(k), g.detach(), a.samples)
    rows += sample_rows(-1, grads[-1].detach(), 4 * a.samples)
    tmp = "%s.tmp.%d" % (a.out, os.getpid())
    with open(tmp, "w") as fp:
        fp.write("tensor,element,grad,scale\n")
        for t, i, v, sc in rows:
            fp.write("%d,%d,%.17g,%.17g\n" % (t, i, v, sc))
    os.replace(tmp, a.out)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "_one":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("workload", choices=WORKLOADS + ["all"])
    b.add_argument("--threads", default="1,2")
    b.add_argument("--seconds", type=float, default=10)
    b.add_argument("--json")
    l = sub.add_parser("logp")
    l.add_argument("ckpt")
    l.add_argument("x")
    l.add_argument("out")
    l.add_argument("--double", action="store_true")
    g = sub.add_parser("grad")
    g.add_argument("ckpt")
    g.add_argument("x")
    g.add_argument("out")
    g.add_argument("--samples", type=int, default=16)
    a = p.parse_args()
    {"bench": cmd_bench, "logp": cmd_logp, "grad": cmd_grad}[a.cmd](a)


if __name__ == "__main__":
    main()

"""nflow.Flow: one normalizing flow of libnflow (NICE, RealNVP, Glow, NSF, MAF, IAF) over NumPy arrays.

The binding owns no algorithm: every number is computed by the C library. Arrays go in and out as
float32 (the library's nf_real); a float32 C-contiguous array is passed by address without a copy,
anything else is converted once (np.ascontiguousarray). Each call into the library holds the flow's
lock (a flow's workspace serves one call at a time) and releases the GIL (ctypes.CDLL).
"""
import ctypes
import math
import warnings
import secrets
import sys
import threading
import time

import numpy as np

from . import _lib
from ._lib import lib, check, invalid

# The CLI's architecture option names (tools/options.c) whose nf_config key differs; every other
# option name is the key itself with '-' as '_' (depth, hidden, activation, init-std → init_std, ...).
_CLI_TO_FIELD = {"mlp_layers": "layers"}
_FIELD_TO_CLI = {v: k for k, v in _CLI_TO_FIELD.items()}
# Given by Flow's own arguments (model, dim, shape), not as architecture keywords.
_SHAPE_FIELDS = ("model", "dim", "channels", "height", "width")


def field_names():
    """The keys of nf_config as the library's field table lists them (nf_config_field_name)."""
    out, i = [], 0
    while True:
        name = lib.nf_config_field_name(i)
        if name is None:
            return out
        out.append(name.decode())
        i += 1


def architecture_options():
    """The keyword names Flow accepts for the architecture: the CLI's option names, '-' written '_'."""
    return [_FIELD_TO_CLI.get(k, k) for k in field_names() if k not in _SHAPE_FIELDS]


def _text(value):
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, str):
        return {"on": "1", "off": "0"}.get(value, value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    raise TypeError("architecture value %r: expected an int, float, bool or name" % (value,))


class _Config:
    """An nf_config in a buffer of nf_config_sizeof() bytes (8-byte aligned), read and written by key."""

    def __init__(self):
        n = lib.nf_config_sizeof()
        self.buf = (ctypes.c_uint64 * ((n + 7) // 8))()
        self.ptr = ctypes.addressof(self.buf)

    def set(self, key, value):
        check(lib.nf_config_set_field(self.ptr, key.encode(), _text(value).encode()))

    def get(self, key):
        out = ctypes.create_string_buffer(64)
        check(lib.nf_config_get_field(self.ptr, key.encode(), out, 64))
        return out.value.decode()


def _config_dict(cfg_ptr):
    c = _Config()
    ctypes.memmove(c.ptr, cfg_ptr, lib.nf_config_sizeof())
    d = {}
    for k in field_names():
        v = c.get(k)
        try:
            d[k] = int(v)
        except ValueError:
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
    return d


def _isatty():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """tqdm's bar when tqdm is importable, otherwise a plain progress line on stderr."""

    def __init__(self, total, unit, enabled):
        self.total, self.unit, self.enabled, self.bar = total, unit, enabled, None
        self.t0 = self.last = time.monotonic()
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="step", desc="nflow fit")
            except ImportError:
                self.tty = _isatty()
                self.every = max(total // 20, 1)

    def update(self, step, ema):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str("loss %.4f %s" % (ema, self.unit), refresh=False)
            return
        now = time.monotonic()
        if step == self.total or (now - self.last > 0.5 if self.tty else step % self.every == 0):
            eta = (now - self.t0) / step * (self.total - step)
            sys.stderr.write("%snflow fit: step %d/%d  loss %.4f %s  ETA %.0f s%s" % (
                "\r" if self.tty else "", step, self.total, ema, self.unit, eta, "   " if self.tty else "\n"))
            sys.stderr.flush()
            self.last = now

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.tty:
            sys.stderr.write("\n")


class Flow:
    """A flow of libnflow.

    Flow(model="realnvp", dim=D, **architecture) for vectors, Flow(model="glow", shape=(C, H, W), ...)
    for images; the architecture keywords are the CLI's options of `nflow train` ('-' written '_'):
    depth, hidden, mlp_layers, activation, scale, partition, perm, prior, coupling, lu, batchnorm,
    actnorm, standardize, init_std, levels, blocks, logit_alpha, seed. Unset ones take the model's
    defaults (those of the CLI). Flow.load(path) reads a checkpoint written by either.
    """

    def __init__(self, model="realnvp", dim=None, shape=None, **architecture):
        self._ptr = ctypes.c_void_p()
        self._lock = threading.Lock()
        self._fitted = False
        self.history_ = []
        if model is None:  # Flow._from_handle
            return
        m = lib.nf_model_from_name(str(model).encode())
        if m < 0:
            raise invalid("unknown model '%s' (one of: nice, realnvp, glow, nsf, maf, iaf)" % model)
        cfg = _Config()
        if shape is not None:
            if dim is not None:
                raise invalid("give dim (vectors) or shape (images), not both")
            shape = tuple(int(s) for s in shape)
            if len(shape) != 3 or min(shape) < 1:
                raise invalid("shape %r: expected (channels, height, width), each >= 1" % (shape,))
            lib.nf_config_default_image(cfg.ptr, m, *shape)
        else:
            if dim is None:
                raise invalid("give dim (vectors) or shape=(C, H, W) (images)")
            if int(dim) < 2 or int(dim) > 1 << 20:
                raise invalid("dim %d: a coupling flow needs 2 to 1048576 dimensions" % int(dim))
            lib.nf_config_default(cfg.ptr, m, int(dim))
        known, given = field_names(), []
        for name, value in architecture.items():
            key = _CLI_TO_FIELD.get(name.replace("-", "_"), name.replace("-", "_"))
            if key not in known or key in _SHAPE_FIELDS:
                raise invalid("unknown architecture option '%s' (one of: %s)" % (name, ", ".join(architecture_options())))
            cfg.set(key, value)
            given.append((name, key))
        for name, key in given:  # an option that is accepted must have an effect
            if lib.nf_config_field_applies(cfg.ptr, key.encode()) == 0:
                extra = " with additive couplings" if key == "scale" and cfg.get("coupling") == "additive" else ""
                raise invalid("option '%s': the %s model does not use it on %s data%s" % (
                    name, model, "image" if shape is not None else "vector", extra))
        check(lib.nf_config_validate(cfg.ptr))
        check(lib.nf_flow_create(cfg.ptr, ctypes.byref(self._ptr)))
        self._describe()

    def _describe(self):
        """Cache the dimension and image shape (a flow's configuration never changes): the per-call
        path then asks the library nothing but the call itself."""
        c = self.config
        self._dim = c["dim"]
        self._shape = (c["channels"], c["height"], c["width"]) if c["channels"] else None

    @classmethod
    def _from_handle(cls, ptr):
        f = cls(model=None)
        f._ptr = ptr
        f._describe()
        f._fitted = True  # a checkpoint carries its standardisation statistics and ActNorm state
        return f

    @classmethod
    def load(cls, path):
        """The flow of a checkpoint (nflow train's or Flow.save's); NflowError for a missing, foreign or
        corrupt file, with the library's reason."""
        ptr = ctypes.c_void_p()
        check(lib.nf_flow_load(str(path).encode(), ctypes.byref(ptr)))
        return cls._from_handle(ptr)

    def save(self, path):
        """Write the checkpoint (safetensors; temporary file + rename), loadable by Flow.load and the CLI."""
        with self._lock:
            check(lib.nf_flow_save(self._handle(), str(path).encode()))

    def close(self):
        """Free the library's flow now (also done when the object is collected)."""
        if getattr(self, "_ptr", None) is not None and self._ptr.value:
            lib.nf_flow_free(self._ptr)
            self._ptr = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    def __reduce__(self):
        """Pickling (joblib, GridSearchCV(n_jobs=...), copy.deepcopy) goes through the checkpoint bytes."""
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "flow.ckpt")
            self.save(path)
            with open(path, "rb") as fp:
                data = fp.read()
        return (_from_checkpoint_bytes, (data, list(self.history_)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._ptr.value:
            raise invalid("the flow has been closed")
        return self._ptr

    # ------------------------------------------------------------------ description
    @property
    def config(self):
        """The model's configuration as a dict of nf_config's keys (the checkpoint's config)."""
        return _config_dict(lib.nf_flow_config(self._handle()))

    @property
    def model(self):
        return self.config["model"]

    @property
    def dim(self):
        return self._dim

    @property
    def shape(self):
        """(C, H, W) of an image model, None for a vector model."""
        return self._shape

    @property
    def num_params(self):
        return int(lib.nf_flow_num_params(self._handle()))

    @property
    def columns(self):
        """The names of the modelled table's columns (a list of str, context columns included, in the
        training file's order), or None; saved in checkpoints (`nflow train` on a CSV with a header sets
        them). Set a list of dim + context_dim names, or None."""
        names = lib.nf_flow_columns(self._handle())
        return None if names is None else names.decode("utf-8", "replace").split(",")

    @columns.setter
    def columns(self, names):
        if names is None:
            check(lib.nf_flow_set_columns(self._handle(), None))
            return
        names = [str(n) for n in names]
        if any("," in n for n in names):
            raise invalid("column names may not contain ','")
        check(lib.nf_flow_set_columns(self._handle(), ",".join(names).encode("utf-8")))

    def __repr__(self):
        if not self._ptr.value:
            return "Flow(closed)"
        what = "shape=%r" % (self.shape,) if self.shape else "dim=%d" % self.dim
        return "Flow(model=%r, %s, %d parameters)" % (self.model, what, self.num_params)

    # ------------------------------------------------------------------ arrays
    def _rows(self, x, what="x"):
        """x as float32 C-contiguous rows (n, D) — the caller's array itself when it already is one,
        else one conversion. uint8 images are put at the centre of their bins (8 bits)."""
        D, shape = self.dim, self.shape
        x = np.asarray(x)
        if shape is not None and x.dtype == np.uint8:
            if x.ndim != 4 or x.shape[1:] != shape:
                raise invalid("%s: uint8 images of shape %s, expected (N, %d, %d, %d)" % ((what, x.shape) + shape))
            return self._dequantize(x, 8, None)
        if shape is not None and x.ndim == 4:
            if x.shape[1:] != shape:
                raise invalid("%s: images of shape %s, expected (N, %d, %d, %d)" % ((what, x.shape) + shape))
            x = x.reshape(x.shape[0], D)  # a view when x is C-contiguous
        if x.ndim != 2 or x.shape[1] != D:
            want = "(N, %d)" % D if shape is None else "(N, %d, %d, %d) or (N, %d)" % (shape + (D,))
            raise invalid("%s: array of shape %s, the model expects %s" % (what, x.shape, want))
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise invalid("%s: dtype %s is not a real number type" % (what, x.dtype))
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size and not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x).all(axis=1))[0]
            raise invalid("%s: row %d holds a non-finite value (NaN or infinity)" % (what, bad))
        return x

    def _dequantize(self, pix, bits, seed):
        """(n, D) float32 from uint8 images (n, C, H, W): nf_images_dequantize (centre of the bins when
        seed is None, uniform noise otherwise)."""
        pix = np.ascontiguousarray(pix, dtype=np.uint8)
        C, H, W = self.shape
        im = _lib.Images(pix.shape[0], C, H, W, pix.ctypes.data, None)
        out = np.empty((pix.shape[0], self.dim), dtype=np.float32)
        rng = None
        if seed is not None:
            rng = _lib.Rng()
            lib.nf_rng_seed(ctypes.byref(rng), int(seed))
        lib.nf_images_dequantize(ctypes.byref(im), None, pix.shape[0], int(bits),
                                 ctypes.byref(rng) if rng is not None else None, out.ctypes.data)
        return out

    def _out_shape(self, n):
        return (n,) + self.shape if self.shape else (n, self.dim)

    @property
    def context_dim(self):
        """K, the context values per sample of a conditional flow (0: unconditional)."""
        return int(lib.nf_flow_context_dim(self._handle()))

    def _context(self, context, n, labels=None):
        """The contexts (n, K) float32 of a conditional flow from context rows or (images) class labels
        (one-hot); None for an unconditional flow, which refuses both."""
        K = self.context_dim
        if context is None and labels is None:
            if K:
                raise invalid("the model is conditional on %d context values per sample: give context=%s"
                              % (K, "(N, %d) rows" % K if self.shape is None else " or labels="))
            return None
        if not K:
            raise invalid("the model is not conditional: it takes no context or labels")
        if labels is not None:
            y = np.asarray(labels).reshape(-1)
            if y.shape[0] != n or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= K:
                raise invalid("labels: %d integers in 0..%d expected" % (n, K - 1))
            c = np.zeros((n, K), dtype=np.float32)
            c[np.arange(n), y] = 1
            return c
        c = np.ascontiguousarray(np.asarray(context, dtype=np.float32))
        if c.ndim == 1 and n == 1:
            c = c.reshape(1, -1)
        if c.ndim != 2 or c.shape != (n, K) or not np.isfinite(c).all():
            raise invalid("context: finite array of shape (%d, %d) expected, got %s" % (n, K, c.shape))
        return c

    # ------------------------------------------------------------------ the flow's maps
    def log_prob(self, x, context=None, labels=None):
        """log p(x) in nats per row, shape (N,), float32. x: (N, D) rows, or (N, C, H, W) images (float
        in the library's pixel scale [-0.5, 0.5), or uint8 put at the centre of their bins). A
        conditional flow: log p(x | c) with context (N, K), or (class-conditional) labels (N,)."""
        x = self._rows(x)
        c = self._context(context, x.shape[0], labels)
        out = np.empty(x.shape[0], dtype=np.float32)
        with self._lock:
            if c is None:
                check(lib.nf_flow_log_prob(self._handle(), x.ctypes.data, out.ctypes.data, x.shape[0]))
            else:
                check(lib.nf_flow_log_prob_ctx(self._handle(), x.ctypes.data, c.ctypes.data, out.ctypes.data, x.shape[0]))
        return out

    def encode(self, x, return_logdet=False):
        """z = f(x), the latents (N, D); with return_logdet, also log|det ∂z/∂x| per row (N,)."""
        x = self._rows(x)
        z = np.empty((x.shape[0], self.dim), dtype=np.float32)
        ld = np.empty(x.shape[0], dtype=np.float32) if return_logdet else None
        with self._lock:
            check(lib.nf_flow_forward(self._handle(), x.ctypes.data, z.ctypes.data,
                                      ld.ctypes.data if ld is not None else None, x.shape[0]))
        return (z, ld) if return_logdet else z

    def decode(self, z, return_logdet=False):
        """x = f⁻¹(z) of latents z (N, D): rows (N, D), or images (N, C, H, W) for an image model, in the
        data space (the training pixels were x = (pixel + u) / 256 − 0.5, u ∈ [0, 1): [-0.5, 0.5); the
        flow does not bound its output to that range); with return_logdet, also log|det ∂x/∂z| per row."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise invalid("z: array of shape %s, the model's latents are (N, %d)" % (z.shape, self.dim))
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.size and not np.isfinite(z).all():
            raise invalid("z: row %d holds a non-finite value (NaN or infinity)" % np.flatnonzero(~np.isfinite(z).all(axis=1))[0])
        x = np.empty(z.shape, dtype=np.float32)
        ld = np.empty(z.shape[0], dtype=np.float32) if return_logdet else None
        with self._lock:
            check(lib.nf_flow_inverse(self._handle(), z.ctypes.data, x.ctypes.data,
                                      ld.ctypes.data if ld is not None else None, z.shape[0]))
        x = x.reshape(self._out_shape(z.shape[0]))
        return (x, ld) if return_logdet else x

    def class_log_prob(self, x):
        """A class-conditional image flow: log p(x | k) for every class k, shape (N, K), float32 (K passes).
        argmax over axis 1 is Bayes' rule with a uniform class prior (classify); the model's marginal is
        logsumexp over axis 1 − log K (as `nflow eval --classify`)."""
        K = self.context_dim
        if self.shape is None or K < 2:
            raise invalid("class_log_prob: the model is not a class-conditional image model")
        x = self._rows(x)
        n = x.shape[0]
        return np.stack([self.log_prob(x, labels=np.full(n, k, dtype=np.int64)) for k in range(K)], axis=1)

    def classify(self, x):
        """A class-conditional image flow as a classifier: argmax_k p(x | k) per image, shape (N,), int64."""
        return np.argmax(self.class_log_prob(x), axis=1).astype(np.int64)

    def sample(self, n, temperature=1.0, seed=None, context=None, labels=None):
        """n samples x = G(z), z from the prior scaled by temperature; the same seed gives the same
        samples (seed None: a fresh random seed). Rows (n, D) or images (n, C, H, W) in the data space
        (the training pixels were x = (pixel + u) / 256 − 0.5, u ∈ [0, 1)): samples are not bounded to
        [-0.5, 0.5); np.clip(np.floor((x + 0.5) * 256), 0, 255) gives 8-bit pixels, as the CLI's PNGs.
        A conditional flow: sample i from p(x | context[i]) (context (n, K)) or of class labels[i]."""
        n = int(n)
        if n < 0:
            raise invalid("n = %d: must be >= 0" % n)
        c = self._context(context, n, labels)
        rng = _lib.Rng()
        lib.nf_rng_seed(ctypes.byref(rng), secrets.randbits(64) if seed is None else int(seed) & (2 ** 64 - 1))
        x = np.empty((n, self.dim), dtype=np.float32)
        with self._lock:
            if c is None:
                check(lib.nf_flow_sample(self._handle(), ctypes.byref(rng), float(temperature), x.ctypes.data, n))
            else:
                check(lib.nf_flow_sample_ctx(self._handle(), ctypes.byref(rng), float(temperature), c.ctypes.data, x.ctypes.data, n))
        return x.reshape(self._out_shape(n))

    def bits_per_dim(self, x, bits=8, seed=1):
        """Mean bits per dimension of images. uint8 (N, C, H, W): reduced to `bits`, uniformly dequantised
        with seed (1, as `nflow eval --seed`), as the CLI computes it (nf_flow_evaluate_images). Float images in [-0.5, 0.5):
        from their mean log-likelihood, (NLL + D ln 2^bits) / (D ln 2)."""
        if self.shape is None:
            raise invalid("bits_per_dim: a vector model; use log_prob")
        x = np.asarray(x)
        if x.dtype == np.uint8:
            if x.ndim != 4 or x.shape[1:] != self.shape:
                raise invalid("x: uint8 images of shape %s, expected (N, %d, %d, %d)" % ((x.shape,) + self.shape))
            pix = np.ascontiguousarray(x)
            C, H, W = self.shape
            im = _lib.Images(pix.shape[0], C, H, W, pix.ctypes.data, None)
            bpd, se, rec = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
            with self._lock:
                check(lib.nf_flow_evaluate_images(self._handle(), ctypes.byref(im), int(bits), int(seed),
                                                  ctypes.byref(bpd), ctypes.byref(se), None))
            return bpd.value
        lp = self.log_prob(x)
        return float(lib.nf_bits_per_dim(-float(np.mean(lp, dtype=np.float64)), self.dim, int(bits)))

    # ------------------------------------------------------------------ training
    def fit(self, x, steps=5000, batch=None, lr=1e-3, warmup=None, clip=None, lr_schedule="constant",
            seed=None, bits=8, callback=None, progress=True, context=None, labels=None, ema=0.0, rollbacks=8):
        """Maximum likelihood by Adam, nf_trainer_step by step; returns self. The options and their
        defaults are nflow train's: steps 5000, batch 512 (images 64; at most the rows when not given),
        lr 1e-3, warmup 100 steps (images 500), clip on the gradient norm of the loss shown (nats/row,
        500; images bits/dim, 0 = off), lr_schedule constant|cosine, seed (default: the model's), bits
        (images: reduce pixels to this depth; the batches are dequantised afresh).
        x: rows (N, D) or uint8 images (N, C, H, W). The first fit sets a standardize layer's statistics
        from x. callback(step, loss, grad_norm), called after every step, may return False to stop.
        A non-finite step is skipped (parameters unchanged); 50 in a row raise NumericError.
        The loss of every step is appended to self.history_ (nats, or bits/dim for images).
        A conditional flow trains p(x | c): context (N, K) rows for vectors, labels (N,) for images.
        ema: the decay of a Polyak (exponential moving) average of the parameters, in [0, 1); with ema > 0
        the flow holds the average when fit returns (0, the default: the last step's parameters; nflow
        train uses 0.999 on CSV tables).
        rollbacks: the divergence guard (nf_trainer_step): after 20 steps in a row with a non-finite loss
        or a spike far above the recent losses, go back to a snapshot of 100 to 200 healthy steps before
        and halve the learning rate, at most this many times (a RuntimeWarning each); once they are spent
        the next divergence raises DivergedError. 0: no guard. self.rollbacks_ counts those made."""
        img = self.shape is not None
        data_ref = None
        if img:
            pix = np.asarray(x)
            if pix.dtype != np.uint8 or pix.ndim != 4 or pix.shape[1:] != self.shape:
                raise invalid("fit: an image model trains on uint8 images (N, %d, %d, %d), got %s %s"
                              % (self.shape + (pix.dtype, pix.shape)))
            pix = np.ascontiguousarray(pix)
            C, H, W = self.shape
            lab = None
            if self.context_dim or labels is not None:
                self._context(None, pix.shape[0], labels)  # checks them (and refuses them when unconditional)
                lab = np.ascontiguousarray(np.asarray(labels).reshape(-1), dtype=np.int32)
            data_ref = _lib.Images(pix.shape[0], C, H, W, pix.ctypes.data, lab.ctypes.data if lab is not None else None)
            rows, keep = pix.shape[0], (pix, lab)
            ctx_ref = None
        else:
            rows_arr = self._rows(x)
            data_ref = _lib.Dataset(rows_arr.shape[0], self.dim, rows_arr.ctypes.data)
            c = self._context(context, rows_arr.shape[0])
            ctx_ref = _lib.Dataset(c.shape[0], c.shape[1], c.ctypes.data) if c is not None else None
            rows, keep = rows_arr.shape[0], (rows_arr, c)
        steps = int(steps)
        if steps < 0:
            raise invalid("steps %d: must be >= 0" % steps)
        if batch is None:
            batch = min(64 if img else 512, rows)
        if lr_schedule not in ("constant", "cosine"):
            raise invalid("lr_schedule '%s': one of constant, cosine" % lr_schedule)
        ema = float(ema)
        if not 0.0 <= ema < 1.0:
            raise invalid("ema %g: the decay of the parameters' average must be in [0, 1) (0: none)" % ema)
        D = self.dim
        scale, offset = (1.0 / (D * math.log(2.0)), float(bits)) if img else (1.0, 0.0)
        if clip is None:
            clip = 0.0 if img else 500.0
        cfg = self.config
        seed = cfg["seed"] if seed is None else int(seed)
        o = _lib.TrainOpts()
        lib.nf_train_opts_default(ctypes.byref(o))
        o.batch, o.seed, o.bits = int(batch), seed + 17, int(bits)
        o.adam.lr = float(lr)
        o.adam.warmup = int((500 if img else 100) if warmup is None else warmup)
        o.adam.clip = float(clip) / scale
        o.adam.cosine_steps = steps if lr_schedule == "cosine" else 0
        o.ema = ema
        if int(rollbacks) < 0:
            raise invalid("rollbacks %d: must be >= 0 (0: no divergence guard)" % int(rollbacks))
        o.rollbacks = int(rollbacks)
        with self._lock:
            f = self._handle()
            if not img and cfg["standardize"] and not self._fitted:
                mean = np.empty(D, dtype=np.float32)
                sd = np.empty(D, dtype=np.float32)
                lib.nf_dataset_moments(ctypes.byref(data_ref), mean.ctypes.data, sd.ctypes.data)
                check(lib.nf_flow_set_standardization(f, mean.ctypes.data, sd.ctypes.data))
            tr = ctypes.c_void_p()
            if img:
                check(lib.nf_trainer_create_images(f, ctypes.byref(data_ref), ctypes.byref(o), ctypes.byref(tr)))
            else:
                check(lib.nf_trainer_create_ctx(f, ctypes.byref(data_ref), ctypes.byref(ctx_ref) if ctx_ref is not None else None,
                                                ctypes.byref(o), ctypes.byref(tr)))
            bar = _Progress(steps, "bits/dim" if img else "nats", progress)
            try:
                loss, gn = ctypes.c_double(), ctypes.c_double()
                ema, consecutive = math.nan, 0
                for s in range(1, steps + 1):
                    rb = lib.nf_trainer_rollbacks(tr, None)
                    st = lib.nf_trainer_step(tr, ctypes.byref(loss), ctypes.byref(gn))
                    if lib.nf_trainer_rollbacks(tr, None) != rb:
                        warnings.warn("step %d: the loss diverged; rolled back, learning rate now %g x its schedule"
                                      % (s, 0.5 ** lib.nf_trainer_rollbacks(tr, None)), RuntimeWarning, stacklevel=2)
                    if st == 5:  # NF_ERR_NUMERIC: the update was skipped
                        consecutive += 1
                        if consecutive >= 50:
                            check(st)
                        continue
                    check(st)
                    consecutive = 0
                    shown = scale * loss.value + offset
                    ema = shown if math.isnan(ema) else 0.98 * ema + 0.02 * shown
                    self.history_.append(shown)
                    bar.update(s, ema)
                    if callback is not None and callback(s, shown, scale * gn.value) is False:
                        break
            finally:
                bar.close()
                self.rollbacks_ = int(lib.nf_trainer_rollbacks(tr, None))
                if ema > 0:
                    lib.nf_trainer_swap_average(tr)  # the flow keeps the average
                lib.nf_trainer_free(tr)
                lib.nf_flow_set_training(f, 0)
                del keep
            self._fitted = True
        return self


def _from_checkpoint_bytes(data, history):
    """A Flow from the bytes of a checkpoint (the other half of Flow.__reduce__)."""
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "flow.ckpt")
        with open(path, "wb") as fp:
            fp.write(data)
        f = Flow.load(path)
    f.history_ = history
    return f


def load_idx(images, labels=None):
    """IDX images (gzip or raw; e.g. Fashion-MNIST in /usr/share/datasets/fashion-mnist/) read by the
    library's loader (nf_images_load_idx): uint8 (N, 1, H, W), and int32 labels (N,) when a label file
    is given (else None)."""
    ptr = ctypes.POINTER(_lib.Images)()
    check(lib.nf_images_load_idx(str(images).encode(), str(labels).encode() if labels is not None else None,
                                 ctypes.byref(ptr)))
    try:
        im = ptr.contents
        pix = np.empty((im.n, im.C, im.H, im.W), dtype=np.uint8)
        ctypes.memmove(pix.ctypes.data, im.pix, pix.nbytes)
        lab = None
        if labels is not None and im.labels:
            lab = np.empty(im.n, dtype=np.int32)
            ctypes.memmove(lab.ctypes.data, im.labels, lab.nbytes)
        return pix, lab
    finally:
        lib.nf_images_free(ptr)


def set_threads(n):
    """OpenMP threads of the library's parallel regions (results do not depend on it)."""
    if int(n) < 1:
        raise invalid("threads %d: must be >= 1" % int(n))
    lib.nf_set_threads(int(n))


def get_threads():
    return int(lib.nf_get_threads())


def library_version():
    """nf_version() of the loaded libnflow.so."""
    return lib.nf_version().decode()


def runtime_info():
    """nf_runtime_info(): the ISA path and the BLAS core in use."""
    return lib.nf_runtime_info().decode()

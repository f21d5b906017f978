"""nflow.Flow: one normalizing flow of libnflow (NICE, RealNVP, Glow, NSF, MAF, IAF) over NumPy arrays.

The binding owns no algorithm: every number is computed by the C library. Arrays go in and out as
float32 (the library's nf_real); a float32 C-contiguous array is passed by address without a copy,
anything else is converted once (np.ascontiguousarray). Each call into the library holds the flow's
lock (a flow's workspace serves one call at a time) and releases the GIL (ctypes.CDLL).
"""
import contextlib
import ctypes
import math
import os
import warnings
import secrets
import sys
import tempfile
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


def _integer(value, what, lo=None, hi=None):
    """value as an int: Python and NumPy integers only (not bool, not floats, not strings: a count or a
    seed is never truncated or parsed), within lo..hi when given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise invalid("%s %r: must be an integer" % (what, value))
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = ">= %d" % lo if hi is None else "<= %d" % hi if lo is None else "%d..%d" % (lo, hi)
        raise invalid("%s %d: must be %s" % (what, value, rng))
    return value


def _real(value, what, lo, hi, note=""):
    """value as a finite float in lo..hi (Python and NumPy reals; not bool or strings)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise invalid("%s %r: must be a number%s" % (what, value, note))
    value = float(value)
    if not lo <= value <= hi:  # also NaN
        raise invalid("%s %r: must be a finite number in %g..%g%s" % (what, value, lo, hi, note))
    return value


def _seed(value, what="seed"):
    return _integer(value, what, 0, 2 ** 64 - 1)


def _numbers(a, what):
    """np.asarray(a) of a real number dtype (integers or floats); strings, bool, complex and objects
    are refused, as are ragged lists, with the binding's error."""
    try:
        a = np.asarray(a)
    except (ValueError, TypeError) as e:
        raise invalid("%s: not an array of numbers (%s)" % (what, e)) from None
    if a.dtype.kind not in "iuf":
        raise invalid("%s: dtype %s is not a real number type" % (what, a.dtype))
    return a


def _float32(a, what):
    """a (of _numbers, ndim >= 1) as a float32 C-contiguous array (a itself when it already is one),
    refusing NaN, infinities and finite values beyond float32's range."""
    if a.dtype == np.float32 and a.flags.c_contiguous:
        out = a  # the common case, without np.errstate's cost (about 1.5 µs a call)
    else:
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: reported below
            out = np.ascontiguousarray(a, dtype=np.float32)
    if out.size:
        ok = np.isfinite(out)
        if not ok.all():
            row = int(np.flatnonzero(~ok.reshape(len(out), -1).all(axis=1))[0])
            src = np.asarray(a[row])
            if src.dtype.kind == "f" and not np.isfinite(src).all():
                raise invalid("%s: row %d holds a non-finite value (NaN or infinity)" % (what, row))
            raise invalid("%s: row %d holds a finite value beyond float32's range (|x| > %.4g; the library "
                          "computes in float32)" % (what, row, float(np.finfo(np.float32).max)))
    return out


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
        self._owner = None  # the thread inside a call (under the lock)
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
            try:
                shape = tuple(shape)
            except TypeError:
                raise invalid("shape %r: expected (channels, height, width)" % (shape,)) from None
            shape = tuple(_integer(s, "shape: %r holds" % (shape,)) for s in shape)
            if len(shape) != 3 or min(shape) < 1:
                raise invalid("shape %r: expected (channels, height, width), each >= 1" % (shape,))
            lib.nf_config_default_image(cfg.ptr, m, *shape)
        else:
            if dim is None:
                raise invalid("give dim (vectors) or shape=(C, H, W) (images)")
            dim = _integer(dim, "dim")
            if dim < 1 or dim > 1 << 20:  # the model's own bounds (couplings: 2 on) are the library's to check
                raise invalid("dim %d: must be 1 to 1048576" % dim)
            lib.nf_config_default(cfg.ptr, m, dim)
        known, given = field_names(), []
        for name, value in architecture.items():
            key = _CLI_TO_FIELD.get(name.replace("-", "_"), name.replace("-", "_"))
            if key not in known or key in _SHAPE_FIELDS:
                raise invalid("unknown architecture option '%s' (one of: %s)" % (name, ", ".join(architecture_options())))
            cfg.set(key, value)
            given.append((name, key))
        for name, key in given:  # an option that is accepted must have an effect
            if lib.nf_config_field_applies(cfg.ptr, key.encode()) == 0:
                extra = " with additive couplings" if key == "scale" and cfg.get("coupling") == "additive" else \
                    " with depth 1 (it goes between blocks)" if key in ("perm", "batchnorm") else \
                    " with depth 1 (a mixed maf/iaf's one block is affine)" if key in ("bins", "bound") and cfg.get("depth") == "1" else ""
                raise invalid("option '%s': the %s model does not use it on %s data%s" % (
                    name, model, "image" if shape is not None else "vector", extra))
        check(lib.nf_config_validate(cfg.ptr))
        check(lib.nf_flow_create(cfg.ptr, ctypes.byref(self._ptr)))
        self._describe()

    def _describe(self):
        """Cache the configuration, dimension, image shape and context size (a flow's configuration never
        changes): the per-call path then asks the library nothing but the call itself."""
        c = self._config = _config_dict(lib.nf_flow_config(self._ptr))
        self._dim = c["dim"]
        self._shape = (c["channels"], c["height"], c["width"]) if c["channels"] else None
        self._K = int(c["context_dim"])

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
        with self._locked() as f:
            check(lib.nf_flow_save(f, str(path).encode()))

    def close(self):
        """Free the library's flow now (also done when the object is collected). A call running in
        another thread (a fit, say) finishes first: close takes the flow's lock as every call does.
        Every method of a closed flow raises InvalidArgumentError ("the flow has been closed")."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ did not get that far
            return
        if self._owner == threading.get_ident():
            raise invalid("close: the flow is busy in this thread (a fit callback cannot close it)")
        with lock:
            if self._ptr.value:
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

    @contextlib.contextmanager
    def _locked(self):
        """The flow's lock held for one call into the library, yielding the handle (InvalidArgumentError
        when closed). A second call from the thread already inside one (a fit callback) is refused
        rather than left to deadlock."""
        me = threading.get_ident()
        if self._owner == me:
            raise invalid("the flow is busy in this thread: a fit callback cannot call the flow's methods")
        with self._lock:
            handle = self._handle()
            self._owner = me
            try:
                yield handle
            finally:
                self._owner = None

    # ------------------------------------------------------------------ description
    @property
    def config(self):
        """The model's configuration as a dict of nf_config's keys (the checkpoint's config)."""
        self._handle()
        return dict(self._config)

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
        with self._locked() as f:
            return int(lib.nf_flow_num_params(f))

    @property
    def columns(self):
        """The names of the modelled table's columns (a list of str, context columns included, in the
        training file's order), or None; saved in checkpoints (`nflow train` on a CSV with a header sets
        them). Set a list of dim + context_dim names, or None."""
        with self._locked() as f:
            names = lib.nf_flow_columns(f)
        return None if names is None else names.decode("utf-8", "replace").split(",")

    @columns.setter
    def columns(self, names):
        if names is not None:
            names = [str(n) for n in names]
            if any("," in n for n in names):
                raise invalid("column names may not contain ','")
        with self._locked() as f:
            check(lib.nf_flow_set_columns(f, None if names is None else ",".join(names).encode("utf-8")))

    def __repr__(self):
        if not self._ptr.value:
            return "Flow(closed)"
        what = "shape=%r" % (self.shape,) if self.shape else "dim=%d" % self.dim
        return "Flow(model=%r, %s, %d parameters)" % (self.model, what, self.num_params)

    # ------------------------------------------------------------------ arrays
    def _rows(self, x, what="x"):
        """x as float32 C-contiguous rows (n, D) — the caller's array itself when it already is one,
        else one conversion. uint8 images are put at the centre of their bins (8 bits); an image model
        refuses other integer pixels (a float array is taken as data-space values, x = pixel/256 − 0.5)."""
        D, shape = self._dim, self._shape
        x = _numbers(x, what)
        if shape is not None:
            if x.dtype == np.uint8:
                if x.ndim != 4 or x.shape[1:] != shape:
                    raise invalid("%s: uint8 images of shape %s, expected (N, %d, %d, %d)" % ((what, x.shape) + shape))
                return self._dequantize(x, 8, None)
            if x.dtype.kind in "iu":
                raise invalid("%s: %s values: an image model takes uint8 pixels (N, %d, %d, %d) or floats in "
                              "the data space, x = pixel/256 − 0.5" % ((what, x.dtype) + shape))
            if x.ndim == 4:
                if x.shape[1:] != shape:
                    raise invalid("%s: images of shape %s, expected (N, %d, %d, %d)" % ((what, x.shape) + shape))
                x = x.reshape(x.shape[0], D)  # a view when x is C-contiguous
        if x.ndim != 2 or x.shape[1] != D:
            want = "(N, %d)" % D if shape is None else "(N, %d, %d, %d) or (N, %d)" % (shape + (D,))
            raise invalid("%s: array of shape %s, the model expects %s" % (what, x.shape, want))
        return _float32(x, what)

    def _dequantize(self, pix, bits, seed):
        """(n, D) float32 from uint8 images (n, C, H, W): nf_images_dequantize (centre of the bins when
        seed is None, uniform noise otherwise)."""
        pix = np.ascontiguousarray(pix, dtype=np.uint8)
        C, H, W = self._shape
        im = _lib.Images(pix.shape[0], C, H, W, pix.ctypes.data, None)
        out = np.empty((pix.shape[0], self._dim), dtype=np.float32)
        rng = None
        if seed is not None:
            rng = _lib.Rng()
            lib.nf_rng_seed(ctypes.byref(rng), int(seed))
        if pix.shape[0]:
            lib.nf_images_dequantize(ctypes.byref(im), None, pix.shape[0], int(bits),
                                     ctypes.byref(rng) if rng is not None else None, out.ctypes.data)
        return out

    def _out_shape(self, n):
        return (n,) + self._shape if self._shape else (n, self._dim)

    @property
    def context_dim(self):
        """K, the context values per sample of a conditional flow (0: unconditional)."""
        self._handle()
        return self._K

    def _labels(self, labels, n):
        """Class labels (n,) of a conditional image model as int64, each in 0..K−1."""
        K = self._K
        try:
            y = np.asarray(labels)
        except (ValueError, TypeError):
            y = np.asarray([None])
        if y.ndim > 1 and y.size == y.shape[0]:
            y = y.reshape(-1)  # (n, 1)
        if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu" or (n and (y.min() < 0 or y.max() >= K)):
            raise invalid("labels: %d integers in 0..%d expected, got %s" % (
                n, K - 1, "%s %s" % (y.dtype, y.shape) if y.dtype.kind in "iu" and y.ndim == 1 and y.shape[0] == n
                else "an array of %s %s" % (y.dtype, y.shape)))
        return y.astype(np.int64, copy=False)

    def _context(self, context, n, labels=None):
        """The contexts (n, K) float32 of a conditional flow from context rows or (image models) class
        labels (one-hot); None for an unconditional flow, which refuses both."""
        self._handle()
        K = self._K
        if context is None and labels is None:
            if K:
                raise invalid("the model is conditional on %d context values per sample: give context=%s"
                              % (K, "(N, %d) rows" % K if self._shape is None else "(N, %d) rows or labels= (N,)" % K))
            return None
        if not K:
            raise invalid("the model is not conditional: it takes no context or labels")
        if context is not None and labels is not None:
            raise invalid("give context= or labels=, not both")
        if labels is not None:
            if self._shape is None:
                raise invalid("labels: class labels are for class-conditional image models; a conditional "
                              "vector model takes context= (N, %d) rows" % K)
            y = self._labels(labels, n)
            c = np.zeros((n, K), dtype=np.float32)
            c[np.arange(n), y] = 1
            return c
        c = _numbers(context, "context")
        if c.ndim == 1 and n == 1:
            c = c.reshape(1, -1)
        if c.ndim != 2 or c.shape != (n, K):
            raise invalid("context: finite array of shape (%d, %d) expected, got %s" % (n, K, c.shape))
        return _float32(c, "context")

    def _image_labels(self, context, labels, n, what):
        """The int32 labels (n,) the library's image functions (trainer, evaluation) take for a
        conditional image model, from labels or one-hot context rows; None for an unconditional one."""
        if context is None and labels is None and not self._K:
            return None
        c = self._context(context, n, labels)  # the checks log_prob makes
        if labels is not None:
            return np.ascontiguousarray(self._labels(labels, n), dtype=np.int32)
        if not (np.all((c == 0) | (c == 1)) and np.all(c.sum(axis=1) == 1)):
            raise invalid("%s: an image model's context is its class label: give labels= (N,) integers in 0..%d, "
                          "or one-hot context rows (N, %d)" % (what, self._K - 1, self._K))
        return np.ascontiguousarray(np.argmax(c, axis=1), dtype=np.int32)

    # ------------------------------------------------------------------ the flow's maps
    def log_prob(self, x, context=None, labels=None):
        """log p(x) in nats per row, shape (N,), float32. x: (N, D) rows, or (N, C, H, W) images (float
        in the library's pixel scale [-0.5, 0.5), or uint8 put at the centre of their bins; other
        integer pixels are refused). A conditional flow: log p(x | c) with context (N, K), or
        (class-conditional image models) labels (N,)."""
        x = self._rows(x)
        c = self._context(context, x.shape[0], labels)
        out = np.empty(x.shape[0], dtype=np.float32)
        with self._locked() as f:
            if c is None:
                check(lib.nf_flow_log_prob(f, x.ctypes.data, out.ctypes.data, x.shape[0]))
            else:
                check(lib.nf_flow_log_prob_ctx(f, x.ctypes.data, c.ctypes.data, out.ctypes.data, x.shape[0]))
        return out

    def encode(self, x, return_logdet=False, context=None, labels=None):
        """z = f(x), the latents (N, D); with return_logdet, also log|det ∂z/∂x| per row (N,). A conditional
        flow: z = f(x; c) with the contexts as log_prob takes them (context= (N, K) rows, or labels= (N,)
        for a class-conditional image model). NumericError (naming the row) when the model overflows on
        a row: a value too far out for it."""
        x = self._rows(x)
        c = self._context(context, x.shape[0], labels)
        z = np.empty((x.shape[0], self._dim), dtype=np.float32)
        ld = np.empty(x.shape[0], dtype=np.float32) if return_logdet else None
        with self._locked() as f:
            check(lib.nf_flow_forward_ctx(f, x.ctypes.data, None if c is None else c.ctypes.data, z.ctypes.data,
                                          ld.ctypes.data if ld is not None else None, x.shape[0]))
        return (z, ld) if return_logdet else z

    def decode(self, z, return_logdet=False, context=None, labels=None):
        """x = f⁻¹(z) of latents z (N, D): rows (N, D), or images (N, C, H, W) for an image model, in the
        data space (the training pixels were x = (pixel + u) / 256 − 0.5, u ∈ [0, 1): [-0.5, 0.5); the
        flow does not bound its output to that range); with return_logdet, also log|det ∂x/∂z| per row.
        A conditional flow: x = f⁻¹(z; c), the contexts as for encode. NumericError (naming the row) when
        the model overflows on a latent."""
        z = _numbers(z, "z")
        if z.ndim != 2 or z.shape[1] != self._dim:
            raise invalid("z: array of shape %s, the model's latents are (N, %d)" % (z.shape, self._dim))
        z = _float32(z, "z")
        c = self._context(context, z.shape[0], labels)
        x = np.empty(z.shape, dtype=np.float32)
        ld = np.empty(z.shape[0], dtype=np.float32) if return_logdet else None
        with self._locked() as f:
            check(lib.nf_flow_inverse_ctx(f, z.ctypes.data, None if c is None else c.ctypes.data, x.ctypes.data,
                                          ld.ctypes.data if ld is not None else None, z.shape[0]))
        x = x.reshape(self._out_shape(z.shape[0]))
        return (x, ld) if return_logdet else x

    def class_log_prob(self, x):
        """A class-conditional image flow: log p(x | k) for every class k, shape (N, K), float32 (K passes).
        argmax over axis 1 is Bayes' rule with a uniform class prior (classify); the model's marginal is
        logsumexp over axis 1 − log K (as `nflow eval --classify`)."""
        K = self.context_dim
        if self._shape is None or K < 2:
            raise invalid("class_log_prob: the model is not a class-conditional image model")
        x = self._rows(x)
        n = x.shape[0]
        return np.stack([self.log_prob(x, labels=np.full(n, k, dtype=np.int64)) for k in range(K)], axis=1).reshape(n, K)

    def classify(self, x):
        """A class-conditional image flow as a classifier: argmax_k p(x | k) per image, shape (N,), int64."""
        return np.argmax(self.class_log_prob(x), axis=1).astype(np.int64)

    def sample(self, n, temperature=1.0, seed=None, context=None, labels=None):
        """n samples x = G(z), z from the prior scaled by temperature; the same seed gives the same
        samples (seed None: a fresh random seed). Rows (n, D) or images (n, C, H, W) in the data space
        (the training pixels were x = (pixel + u) / 256 − 0.5, u ∈ [0, 1)): samples are not bounded to
        [-0.5, 0.5); np.clip(np.floor((x + 0.5) * 256), 0, 255) gives 8-bit pixels, as the CLI's PNGs.
        A conditional flow: sample i from p(x | context[i]) (context (n, K)) or (class-conditional image
        models) of class labels[i]. n and seed are integers (not truncated floats). Samples the model
        overflows on (an unstable model; a lower temperature may help) come back as inf or NaN, with a
        RuntimeWarning saying how many (NumPy's convention for overflow)."""
        n = _integer(n, "n", 0)
        seed = secrets.randbits(64) if seed is None else _seed(seed)
        temperature = _real(temperature, "temperature", 0.0, 100.0)  # the CLI's range
        c = self._context(context, n, labels)
        rng = _lib.Rng()
        lib.nf_rng_seed(ctypes.byref(rng), seed)
        x = np.empty((n, self._dim), dtype=np.float32)
        with self._locked() as f:
            if c is None:
                st = lib.nf_flow_sample(f, ctypes.byref(rng), temperature, x.ctypes.data, n)
            else:
                st = lib.nf_flow_sample_ctx(f, ctypes.byref(rng), temperature, c.ctypes.data, x.ctypes.data, n)
            if st == 5:  # NF_ERR_NUMERIC: all n written, some overflowed: NumPy's convention, a warning
                bad = int((~np.isfinite(x).all(axis=1)).sum())
                warnings.warn("%d of the %d samples are not finite (the model overflows on their latents; a lower "
                              "temperature may help)" % (bad, n), RuntimeWarning, stacklevel=2)
            else:
                check(st)
        return x.reshape(self._out_shape(n))

    def bits_per_dim(self, x, bits=8, seed=1, context=None, labels=None):
        """Mean bits per dimension of images. uint8 (N, C, H, W): reduced to `bits` (1..8), dequantised with
        seed (1, as `nflow eval --seed`) as the model was trained (uniform noise, or the learned q of
        dequant="variational", whose log q the figure then includes), as the CLI computes it
        (nf_flow_evaluate_images). Float images in the data space [-0.5, 0.5): from their mean log-likelihood, (NLL + D ln 2^bits) /
        (D ln 2). Other integer pixels are refused. A class-conditional image model: −log₂ p(x | label)
        per dimension, with labels (N,) (or one-hot context rows (N, K)), as log_prob takes them."""
        self._handle()
        if self._shape is None:
            raise invalid("bits_per_dim: a vector model; use log_prob")
        bits = _integer(bits, "bits")
        if not 1 <= bits <= 8:
            raise invalid("bits %d: must be 1..8" % bits)
        seed = _seed(seed)
        x = _numbers(x, "x")
        if x.dtype == np.uint8:
            if x.ndim != 4 or x.shape[1:] != self._shape:
                raise invalid("x: uint8 images of shape %s, expected (N, %d, %d, %d)" % ((x.shape,) + self._shape))
            if x.shape[0] == 0:
                raise invalid("bits_per_dim: no images")
            pix = np.ascontiguousarray(x)
            lab = self._image_labels(context, labels, pix.shape[0], "bits_per_dim")
            C, H, W = self._shape
            im = _lib.Images(pix.shape[0], C, H, W, pix.ctypes.data, lab.ctypes.data if lab is not None else None)
            bpd, se = ctypes.c_double(), ctypes.c_double()
            with self._locked() as f:
                check(lib.nf_flow_evaluate_images(f, ctypes.byref(im), bits, seed,
                                                  ctypes.byref(bpd), ctypes.byref(se), None))
            return bpd.value
        lp = self.log_prob(x, context=context, labels=labels)
        if lp.shape[0] == 0:
            raise invalid("bits_per_dim: no images")
        return float(lib.nf_bits_per_dim(-float(np.mean(lp, dtype=np.float64)), self._dim, bits))

    def plot(self, path, data=None, context=None, size=256, seed=1):
        """Write the three-panel PNG of a 2-D vector model to path, as `nflow plot` draws it: the learned
        density, samples (orange) over data (blue; rows (N, 2), optional) and the warped latent grid. A
        conditional model: one row of panels per context row (context (R, K), 1 ≤ R ≤ 16), p(x | c) each;
        it takes no data (the data's rows have contexts of their own). size: pixels per panel (32..4096);
        seed: the samples' draws."""
        self._handle()
        if self._shape is not None or self._dim != 2:
            raise invalid("plot needs a 2-D vector model, this one is %s" % (
                "an image model" if self._shape is not None else "%d-dimensional" % self._dim))
        size, seed = _integer(size, "size", 32, 4096), _seed(seed)
        d = None
        if data is not None:
            xd = self._rows(data, "data")
            d = _lib.Dataset(xd.shape[0], 2, xd.ctypes.data, None)
        c, nc = None, 1
        if context is not None:
            if not self._K:
                raise invalid("the model is not conditional: it takes no context")
            c = _numbers(context, "context")
            c = c.reshape(1, -1) if c.ndim == 1 else c
            if c.ndim != 2 or c.shape[1] != self._K or not 1 <= c.shape[0] <= 16:
                raise invalid("context: array of shape %s; plot takes 1 to 16 context rows of %d values" % (c.shape, self._K))
            c, nc = _float32(c, "context"), c.shape[0]
        elif self._K:
            raise invalid("the model is conditional on %d context values: give context= (R, %d) rows, a row of "
                          "panels each" % (self._K, self._K))
        with self._locked() as f:
            check(lib.nf_plot_2d_ctx(f, ctypes.byref(d) if d is not None else None,
                                     c.ctypes.data if c is not None else None, nc, str(path).encode(), size, seed))

    # ------------------------------------------------------------------ training
    def fit(self, x, steps=5000, batch=None, lr=1e-3, warmup=None, clip=None, lr_schedule="constant",
            seed=None, bits=8, callback=None, progress=True, context=None, labels=None, ema=0.0, rollbacks=8,
            weight_decay=0.0, validation=0.0, eval_every=100, patience=20):
        """Maximum likelihood by Adam, nf_trainer_step by step; returns self. The options and their
        defaults are nflow train's: steps 5000, batch 512 (images 64; at most the rows when not given),
        lr 1e-3, warmup 100 steps (images 500), clip on the gradient norm of the loss shown (nats/row,
        500; images bits/dim; 0..1e30, 0 = off), lr_schedule constant|cosine (nflow train gives nsf its own:
        15 000 cosine steps on vectors, 10 000 on images — pass them for the same run), seed (default: the
        model's), bits (images: reduce pixels to this depth, 1..8; the batches are dequantised afresh). Counts
        and seeds are integers (a float such as 2.5 is refused, not truncated).
        x: rows (N, D) or uint8 images (N, C, H, W). The first fit sets a standardize layer's statistics
        from x. callback(step, loss, grad_norm), called after every step, may return False to stop.
        A non-finite step is skipped (parameters unchanged); 50 in a row raise NumericError.
        The loss of every step is appended to self.history_ (nats, or bits/dim for images).
        A conditional flow trains p(x | c): context (N, K) rows for vectors, labels (N,) (or one-hot
        context rows) for images; the same checks as log_prob (an unconditional flow refuses both).
        ema: the decay of a Polyak (exponential moving) average of the parameters, in [0, 1); with ema > 0
        the flow holds the average when fit returns (0, the default: the last step's parameters; nflow
        train uses 0.999 on CSV tables).
        rollbacks: the divergence guard (nf_trainer_step): after 20 steps in a row with a non-finite loss
        or a spike far above the recent losses, go back to a snapshot of 100 to 200 healthy steps before
        and halve the learning rate, at most this many times (a RuntimeWarning each); once they are spent
        the next divergence raises DivergedError. 0: no guard. self.rollbacks_ counts those made.
        weight_decay: decoupled (AdamW) decay, every step p <- p(1 - lr_t weight_decay) (0: none; None: nflow
        train's default on a CSV table, 0.1 up to 16 200 training rows and 0.1 * 16200 / rows above, the
        rows counted after the validation rows are held out; images: 0).
        validation (rows only): the fraction of the rows held out (drawn as nflow train --val-fraction
        draws them from its training rows: nf_dataset_split, seed + 1), scored every eval_every steps and
        at the end; the flow keeps the parameters (the average, with ema) of the best of those scores and
        of the last step, and stops after patience scores without a better one (0: never);
        self.val_history_ lists (step, validation NLL in nats), self.best_step_ the step kept. 0 (the
        default): all rows train, nothing held out."""
        self._handle()
        img = self._shape is not None
        # the options first: nothing is converted or trained with a bad one
        steps = _integer(steps, "steps", 0)
        if batch is not None:
            batch = _integer(batch, "batch size")
        lr = _real(lr, "lr", 1e-12, 10)
        warmup = (500 if img else 100) if warmup is None else _integer(warmup, "warmup", 0)
        clip = (0.0 if img else 500.0) if clip is None else _real(clip, "clip", 0.0, 1e30, " (0: off)")
        if lr_schedule not in ("constant", "cosine"):
            raise invalid("lr_schedule '%s': one of constant, cosine" % (lr_schedule,))
        ema = _real(ema, "ema", 0.0, 1.0)
        if not ema < 1.0:
            raise invalid("ema %g: the decay of the parameters' average must be in [0, 1) (0: none)" % ema)
        rollbacks = _integer(rollbacks, "rollbacks")
        if rollbacks < 0:
            raise invalid("rollbacks %d: must be >= 0 (0: no divergence guard)" % rollbacks)
        bits = _integer(bits, "bits")
        if img and not 1 <= bits <= 8:
            raise invalid("bits %d: must be 1..8" % bits)
        if weight_decay is not None:
            weight_decay = _real(weight_decay, "weight_decay", 0.0, 100.0)  # the CLI's range
            _decay_fits(weight_decay, lr)
        validation = _real(validation, "validation", 0.0, 0.9)
        eval_every = _integer(eval_every, "eval_every", 1)
        patience = _integer(patience, "patience", 0)
        if validation > 0 and img:
            raise invalid("validation: rows only (an image model is scored on its test images)")
        cfg = self._config
        seed = cfg["seed"] if seed is None else _seed(seed)
        if img:
            pix = _numbers(x, "x")
            if pix.dtype != np.uint8 or pix.ndim != 4 or pix.shape[1:] != self._shape:
                raise invalid("fit: an image model trains on uint8 images (N, %d, %d, %d), got %s %s"
                              % (self._shape + (pix.dtype, pix.shape)))
            if pix.shape[0] == 0:
                raise invalid("fit: no images")
            pix = np.ascontiguousarray(pix)
            C, H, W = self._shape
            lab = self._image_labels(context, labels, pix.shape[0], "fit")
            data_ref = _lib.Images(pix.shape[0], C, H, W, pix.ctypes.data, lab.ctypes.data if lab is not None else None)
            rows, keep = pix.shape[0], (pix, lab)
            ctx_ref = None
        else:
            rows_arr = self._rows(x)
            if rows_arr.shape[0] == 0:
                raise invalid("fit: no rows")
            c = self._context(context, rows_arr.shape[0], labels)
            if validation > 0:
                if rows_arr.shape[0] < 2:
                    raise invalid("fit: 1 row: too few to hold out a validation split (validation=0: none)")
                (rows_arr, c), (val_rows, val_c) = _split_rows(rows_arr, c, validation, seed + 1)
                val_ref = _lib.Dataset(val_rows.shape[0], self._dim, val_rows.ctypes.data)
                val_ctx = _lib.Dataset(val_c.shape[0], val_c.shape[1], val_c.ctypes.data) if val_c is not None else None
            data_ref = _lib.Dataset(rows_arr.shape[0], self._dim, rows_arr.ctypes.data)
            ctx_ref = _lib.Dataset(c.shape[0], c.shape[1], c.ctypes.data) if c is not None else None
            rows, keep = rows_arr.shape[0], (rows_arr, c) + ((val_rows, val_c) if validation > 0 else ())
        if weight_decay is None:  # nflow train's default: a prior of fixed weight against the summed log-likelihood
            weight_decay = 0.0 if img else 0.1 * min(1.0, 16200.0 / rows)
            _decay_fits(weight_decay, lr)
        if batch is None:
            batch = min(64 if img else 512, rows)
        D = self._dim
        scale, offset = (1.0 / (D * math.log(2.0)), float(bits)) if img else (1.0, 0.0)
        o = _lib.TrainOpts()
        lib.nf_train_opts_default(ctypes.byref(o))
        o.batch, o.seed, o.bits = batch, (seed + 17) & (2 ** 64 - 1), bits
        o.adam.lr = lr
        o.adam.warmup = warmup
        o.adam.clip = clip / scale
        o.adam.cosine_steps = steps if lr_schedule == "cosine" else 0
        o.ema = ema
        o.rollbacks = rollbacks
        o.adam.weight_decay = weight_decay
        self.val_history_, self.best_step_ = [], None
        best_dir = tempfile.TemporaryDirectory() if validation > 0 else None  # removed on leaving, however
        best_path = os.path.join(best_dir.name, "best.ckpt") if best_dir else None
        with best_dir or contextlib.nullcontext(), self._locked() as f:
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

            def val_nll(save_below):
                """(the validation NLL of the model fit would return now (with ema: the average), whether it
                was saved to best_path: it is when finite and below save_below)."""
                ll, se = ctypes.c_double(), ctypes.c_double()
                if ema > 0:
                    lib.nf_trainer_swap_average(tr)
                try:
                    st = lib.nf_flow_evaluate_ctx(f, ctypes.byref(val_ref), ctypes.byref(val_ctx) if val_ctx is not None else None,
                                                  ctypes.byref(ll), ctypes.byref(se))
                    saved = st == 0 and -ll.value < save_below
                    if saved:  # while the flow holds what it scored
                        check(lib.nf_flow_save(f, best_path.encode()))
                finally:
                    if ema > 0:
                        lib.nf_trainer_swap_average(tr)
                if st not in (0, 5):  # NF_ERR_NUMERIC: never the best
                    check(st)
                return (-ll.value if st == 0 else math.inf), saved

            best, last_scored, end_nll, s, bad, restore = math.inf, 0, math.inf, 0, 0, False
            try:
                loss, gn = ctypes.c_double(), ctypes.c_double()
                shown_ema, consecutive = math.nan, 0  # the progress line's smoothed loss
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
                    else:
                        check(st)
                        consecutive = 0
                        shown = scale * loss.value + offset
                        shown_ema = shown if math.isnan(shown_ema) else 0.98 * shown_ema + 0.02 * shown
                        self.history_.append(shown)
                        bar.update(s, shown_ema)
                    if validation > 0 and s % eval_every == 0:  # scheduled: the best so far, early stopping
                        nll, better = val_nll(best)
                        self.val_history_.append((s, nll))
                        last_scored = s
                        if better:
                            best, self.best_step_, bad = nll, s, 0
                        else:
                            bad += 1
                            if patience and bad >= patience:
                                break
                    if st != 5 and callback is not None and callback(s, shown, scale * gn.value) is False:
                        break
                if validation > 0:  # the last step, when it was not scored on schedule
                    if last_scored != s and s > 0:
                        end_nll = val_nll(-math.inf)[0]  # scored, never saved
                        self.val_history_.append((s, end_nll))
                    restore = self.best_step_ is not None and self.best_step_ != s and not end_nll < best
                    if not restore:
                        self.best_step_ = s
            finally:
                bar.close()
                self.rollbacks_ = int(lib.nf_trainer_rollbacks(tr, None))
                if ema > 0:
                    lib.nf_trainer_swap_average(tr)  # the flow keeps the average
                lib.nf_trainer_free(tr)
                lib.nf_flow_set_training(f, 0)
                del keep
            if restore:  # the best scored model instead of the last step's
                g = ctypes.c_void_p()
                check(lib.nf_flow_load(best_path.encode(), ctypes.byref(g)))
                old, f.value = f.value, g.value
                lib.nf_flow_free(ctypes.c_void_p(old))
                lib.nf_flow_set_training(f, 0)
            self._fitted = True
        return self


def _decay_fits(weight_decay, lr):
    """Refuse a weight decay that would flip the parameters' sign in one step (lr * weight_decay >= 1)."""
    if weight_decay * lr >= 1:
        raise invalid("weight_decay %g with lr %g: lr * weight_decay must be below 1" % (weight_decay, lr))


def _split_rows(x, c, frac, seed):
    """((x, c) of the training rows, (x, c) of the held-out ones): round(frac * N) rows (at least 1) drawn
    by nf_dataset_split with seed, the rows nflow train holds out for validation with --seed seed - 1.
    c (contexts, N x K, or None) follows its rows."""
    both = x if c is None else np.ascontiguousarray(np.hstack([x, c]), dtype=np.float32)
    ds = _lib.Dataset(both.shape[0], both.shape[1], both.ctypes.data)
    parts = [ctypes.POINTER(_lib.Dataset)(), ctypes.POINTER(_lib.Dataset)()]
    check(lib.nf_dataset_split(ctypes.byref(ds), frac, seed & (2 ** 64 - 1), ctypes.byref(parts[0]), ctypes.byref(parts[1])))
    out = []
    try:
        for p in parts:
            d = p.contents
            a = np.empty((d.n, d.dim), dtype=np.float32)
            ctypes.memmove(a.ctypes.data, d.x, a.nbytes)
            D = x.shape[1]
            out.append((np.ascontiguousarray(a[:, :D]), np.ascontiguousarray(a[:, D:]) if c is not None else None))
    finally:
        for p in parts:
            lib.nf_dataset_free(p)
    return out


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
    lib.nf_set_threads(_integer(n, "threads", 1))


def get_threads():
    return int(lib.nf_get_threads())


def library_version():
    """nf_version() of the loaded libnflow.so."""
    return lib.nf_version().decode()


def runtime_info():
    """nf_runtime_info(): the ISA path and the BLAS core in use."""
    return lib.nf_runtime_info().decode()

"""Loading libnflow.so and declaring the C functions the package calls (ctypes).

Where the library is looked for, first match wins:
  1. the environment variable NFLOW_LIBRARY (a path to libnflow.so);
  2. the path `make install` recorded in nflow/_paths.py (absent in a checkout);
  3. a checkout's build tree: <checkout>/build/libnflow.so, the package being <checkout>/python/nflow;
  4. the dynamic loader's search (libnflow.so.0, then libnflow.so).

ctypes.CDLL releases the GIL for the duration of every foreign call (PyDLL would keep it), so the
library's long calls (a training step, log_prob of many rows) let other Python threads run; the test
suite checks it (tests/python/test_flow.py::test_gil_released_during_library_calls).
"""
import ctypes
import os

from . import _version

c_real_p = ctypes.c_void_p  # float32 arrays travel as raw addresses (numpy's .ctypes.data)


class NflowError(Exception):
    """A failure reported by libnflow (or refused by the binding before calling it).

    `status` is the library's nf_status name ("NF_ERR_INVALID", ...), `reason` the one-line text of
    nf_last_error() (or the binding's own)."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class InvalidArgumentError(NflowError, ValueError):
    """NF_ERR_INVALID: a bad argument, option, shape or value (also a ValueError)."""


class FileFormatError(NflowError, ValueError):
    """NF_ERR_FORMAT: malformed file contents, e.g. a file that is not an nflow checkpoint."""


class FileIOError(NflowError, OSError):
    """NF_ERR_IO: a file could not be opened, read or written."""


class NumericError(NflowError, ArithmeticError):
    """NF_ERR_NUMERIC: a non-finite value or a singular matrix."""


class DivergedError(NumericError):
    """NF_ERR_DIVERGED: training diverged again after the divergence guard's last roll-back."""


_STATUS = {
    1: ("NF_ERR_INVALID", InvalidArgumentError),
    2: ("NF_ERR_NOMEM", NflowError),
    3: ("NF_ERR_IO", FileIOError),
    4: ("NF_ERR_FORMAT", FileFormatError),
    5: ("NF_ERR_NUMERIC", NumericError),
    6: ("NF_ERR_DIVERGED", DivergedError),
}


def _candidates():
    env = os.environ.get("NFLOW_LIBRARY")
    if env:
        return [env], True
    out = []
    try:
        from . import _paths  # written by `make install`
        out.append(_paths.LIBRARY)
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    out.append(os.path.join(here, "..", "..", "build", "libnflow.so"))
    out += ["libnflow.so.0", "libnflow.so"]
    return out, False


def _load():
    names, forced = _candidates()
    errors = []
    for name in names:
        if os.sep in name and not os.path.exists(name):
            errors.append("%s: no such file" % name)
            continue
        try:
            path = os.path.normpath(name) if os.sep in name else name
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append(str(e))
            if forced:
                break
    raise ImportError("nflow: cannot load libnflow.so (%s); build the library (make) or set NFLOW_LIBRARY "
                      "to its path" % "; ".join(errors))


lib, library_path = _load()


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_p = ctypes.c_void_p
_i32, _i64, _u64, _dbl, _str = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_double, ctypes.c_char_p
_st = ctypes.c_int  # nf_status

_fn("nf_version", _str)
_fn("nf_last_error", _str)
_fn("nf_set_threads", None, ctypes.c_int)
_fn("nf_get_threads", ctypes.c_int)
_fn("nf_runtime_info", _str)
_fn("nf_rng_seed", None, _p, _u64)
_fn("nf_config_sizeof", ctypes.c_size_t)
_fn("nf_config_field_count", _i32)
_fn("nf_config_field_name", _str, _i32)
_fn("nf_config_set_field", _st, _p, _str, _str)
_fn("nf_config_get_field", _st, _p, _str, ctypes.c_char_p, ctypes.c_size_t)
_fn("nf_config_field_applies", ctypes.c_int, _p, _str)
_fn("nf_config_default", None, _p, ctypes.c_int, _i32)
_fn("nf_config_default_image", None, _p, ctypes.c_int, _i32, _i32, _i32)
_fn("nf_config_validate", _st, _p)
_fn("nf_model_from_name", ctypes.c_int, _str)
_fn("nf_flow_create", _st, _p, _p)
_fn("nf_flow_free", None, _p)
_fn("nf_flow_config", _p, _p)
_fn("nf_flow_dim", _i32, _p)
_fn("nf_flow_num_params", _i64, _p)
_fn("nf_flow_num_layers", _i32, _p)
_fn("nf_flow_columns", _str, _p)
_fn("nf_flow_set_columns", _st, _p, _str)
_fn("nf_flow_set_training", None, _p, ctypes.c_int)
_fn("nf_flow_set_standardization", _st, _p, _p, _p)
_fn("nf_flow_log_prob", _st, _p, _p, _p, _i64)
_fn("nf_flow_sample", _st, _p, _p, _dbl, _p, _i64)
_fn("nf_flow_save", _st, _p, _str)
_fn("nf_flow_load", _st, _str, _p)
_fn("nf_dataset_moments", None, _p, _p, _p)
_fn("nf_train_opts_default", None, _p)
_fn("nf_trainer_create", _st, _p, _p, _p, _p)
_fn("nf_trainer_create_images", _st, _p, _p, _p, _p)
_fn("nf_trainer_free", None, _p)
_fn("nf_trainer_step", _st, _p, ctypes.POINTER(_dbl), ctypes.POINTER(_dbl))
_fn("nf_trainer_swap_average", _st, _p)
_fn("nf_trainer_rollbacks", _i32, _p, _p)
_fn("nf_images_dequantize", None, _p, _p, _i64, _i32, _p, _p)
_fn("nf_flow_evaluate_images", _st, _p, _p, _i32, _u64, ctypes.POINTER(_dbl), ctypes.POINTER(_dbl), ctypes.POINTER(_dbl))
_fn("nf_bits_per_dim", _dbl, _dbl, _i64, _i32)
_fn("nf_images_load_idx", _st, _str, _str, _p)
_fn("nf_images_free", None, _p)
_fn("nf_flow_context_dim", _i32, _p)
_fn("nf_flow_log_prob_ctx", _st, _p, _p, _p, _p, _i64)
_fn("nf_flow_forward_ctx", _st, _p, _p, _p, _p, _p, _i64)
_fn("nf_flow_inverse_ctx", _st, _p, _p, _p, _p, _p, _i64)
_fn("nf_flow_sample_ctx", _st, _p, _p, _dbl, _p, _p, _i64)
_fn("nf_trainer_create_ctx", _st, _p, _p, _p, _p, _p)
_fn("nf_dataset_split", _st, _p, _dbl, _u64, _p, _p)
_fn("nf_dataset_free", None, _p)
_fn("nf_flow_evaluate_ctx", _st, _p, _p, _p, ctypes.POINTER(_dbl), ctypes.POINTER(_dbl))
_fn("nf_plot_2d_ctx", _st, _p, _p, _p, _i32, _str, _i32, _u64)


class Rng(ctypes.Structure):
    """nf_rng (public in nflow.h): xoshiro256** state."""
    _fields_ = [("s", _u64 * 4)]


class Dataset(ctypes.Structure):
    """nf_dataset (public in nflow.h); x borrowed from a NumPy array, never freed by the library here;
    names stays NULL (unnamed columns)."""
    _fields_ = [("n", _i64), ("dim", _i32), ("x", _p), ("names", _p)]


class Images(ctypes.Structure):
    """nf_images (public in nflow.h); pix borrowed from a NumPy uint8 array."""
    _fields_ = [("n", _i64), ("C", _i32), ("H", _i32), ("W", _i32), ("pix", _p), ("labels", _p)]


class AdamOpts(ctypes.Structure):
    _fields_ = [("lr", _dbl), ("beta1", _dbl), ("beta2", _dbl), ("eps", _dbl), ("warmup", _i64),
                ("cosine_steps", _i64), ("clip", _dbl), ("weight_decay", _dbl)]


class TrainOpts(ctypes.Structure):
    _fields_ = [("batch", _i64), ("adam", AdamOpts), ("seed", _u64), ("bits", _i32), ("ema", _dbl), ("rollbacks", _i32)]


def check(status):
    """Raise the NflowError subclass of a non-zero nf_status, with nf_last_error()'s reason."""
    if status:
        name, cls = _STATUS.get(status, ("NF_ERR_%d" % status, NflowError))
        raise cls(name, lib.nf_last_error().decode("utf-8", "replace"))


def invalid(reason):
    """The binding's own refusal of an argument, as the library would report it."""
    return InvalidArgumentError("NF_ERR_INVALID", reason)


_have = lib.nf_version().decode()
if _have != _version.__version__:
    raise ImportError("nflow: the Python package is version %s but %s is libnflow %s; use the library of the "
                      "same checkout or set NFLOW_LIBRARY" % (_version.__version__, library_path, _have))

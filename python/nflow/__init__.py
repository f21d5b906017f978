"""nflow — normalizing flows (NICE, RealNVP, Glow, NSF, MAF, IAF) from Python, over the C library libnflow.so.

    import numpy as np, nflow
    x = np.random.default_rng(0).standard_normal((5000, 2)).astype(np.float32) * [1, 3]
    flow = nflow.Flow("realnvp", dim=2, depth=4, hidden=32).fit(x, steps=500)
    print(flow.log_prob(x[:5]), flow.sample(3, seed=1))

Everything is computed by the library; see nflow.Flow and nflow.sklearn.FlowDensity.
"""
from ._version import __version__
from ._lib import (NflowError, InvalidArgumentError, FileFormatError, FileIOError, NumericError, DivergedError,
                   library_path)
from .flow import (Flow, set_threads, get_threads, library_version, runtime_info, architecture_options,
                   field_names, load_idx)

__all__ = ["Flow", "NflowError", "InvalidArgumentError", "FileFormatError", "FileIOError", "NumericError", "DivergedError",
           "set_threads", "get_threads", "library_version", "runtime_info", "architecture_options",
           "field_names", "load_idx", "library_path", "__version__"]

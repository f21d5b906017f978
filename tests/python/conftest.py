"""Shared fixtures: the CLI of this build (NFLOW_CLI, else <checkout>/build/nflow) and toy data."""
import os
import shutil

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SANITIZED = os.environ.get("NFLOW_SANITIZE", "0") in ("1", "ON", "on", "TRUE", "true")


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("NFLOW_CLI") or os.path.join(ROOT, "build", "nflow")
    if not os.path.exists(path):
        path = shutil.which("nflow")
    if not path:
        pytest.skip("no nflow CLI built (set NFLOW_CLI)")
    return path


def moons(n, seed):
    """Two interleaved half circles with noise (float32, (n, 2))."""
    r = np.random.default_rng(seed)
    t = r.uniform(0, np.pi, n)
    upper = r.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    return (np.stack([x, y], 1) + 0.05 * r.standard_normal((n, 2))).astype(np.float32)

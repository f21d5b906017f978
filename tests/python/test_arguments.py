"""nflow.Flow and nflow.sklearn.FlowDensity refuse what they cannot honour with the binding's own
InvalidArgumentError (never a raw NumPy error, a silent conversion or truncation, or a crash): closing
while another thread trains, integer pixels, zero rows, arguments fit would ignore, non-numbers,
non-integral counts, the clip range, seed=None, float32's range, and labels for bits_per_dim; a model
that overflows: encode/decode raise NumericError, sample warns."""
import json
import os
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

import nflow
from nflow.sklearn import FlowDensity
from conftest import moons

Invalid = nflow.InvalidArgumentError


def _pixels(n=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 4, 4)).astype(np.uint8)


def _image_flow(**kw):
    return nflow.Flow("glow", shape=(1, 4, 4), depth=1, hidden=4, levels=1, **kw)


def test_close_waits_for_a_running_fit():
    """close() in one thread while fit runs in another: close takes the flow's lock, so it waits for the
    fit to finish (it used to free the flow under the trainer: a segfault). Run in a child process so a
    crash is a failure of this test, not of the test session."""
    script = r"""
import threading, time, numpy as np, nflow
nflow.set_threads(1)
h = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
x = np.random.default_rng(0).standard_normal((2000, 2))
started = threading.Event()
def cb(step, loss, gn):
    started.set()
    time.sleep(0.002)  # the fit lasts >= 0.4 s
t = threading.Thread(target=lambda: h.fit(x, steps=200, batch=256, progress=False, callback=cb))
t.start()
started.wait()
h.close()
steps_when_closed = len(h.history_)
t.join()
assert steps_when_closed == 200, "close returned after %d of 200 steps" % steps_when_closed
for call in (lambda: h.log_prob(x[:2]), lambda: h.encode(x[:2]), lambda: h.decode(x[:2]), lambda: h.sample(2),
             lambda: h.fit(x, steps=1, progress=False), lambda: h.config, lambda: h.num_params, lambda: h.context_dim,
             lambda: h.columns, lambda: h.save("unused.ckpt")):
    try:
        call()
    except nflow.InvalidArgumentError as e:
        assert "closed" in str(e), e
    else:
        raise AssertionError("a closed flow answered")
print("ok")
"""
    here = os.path.dirname(os.path.dirname(os.path.abspath(nflow.__file__)))  # the package under test
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr)


def test_fit_callback_calling_the_flow_is_refused_not_deadlocked():
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    seen = []

    def cb(step, loss, gn):
        for call in (lambda: f.num_params, f.close):
            with pytest.raises(Invalid, match="busy in this thread"):
                call()
        seen.append(step)
        return False
    done = threading.Event()
    t = threading.Thread(target=lambda: (f.fit(moons(64, 0), steps=3, progress=False, callback=cb), done.set()))
    t.start()
    t.join(60)
    assert done.is_set() and seen == [1]
    assert f.num_params > 0  # not closed, lock free again


def test_image_models_refuse_integer_pixels_other_than_uint8():
    g = _image_flow()
    pix = _pixels()
    centre = (pix.astype(np.float32) + 0.5) / 256 - 0.5
    want = g.log_prob(pix)
    np.testing.assert_array_equal(g.log_prob(centre), want)  # uint8 and data-space floats both taken
    for bad in (pix.astype(np.int64), pix.astype(np.uint16), pix.astype(np.int32).reshape(32, 16)):
        for call in (g.log_prob, g.encode, g.bits_per_dim):
            with pytest.raises(Invalid, match=r"uint8 pixels .* x = pixel/256 − 0.5"):
                call(bad)
    with pytest.raises(Invalid, match="not a real number type"):
        g.bits_per_dim(pix.astype(bool))
    # a vector model still takes integer rows
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    np.testing.assert_array_equal(f.log_prob(np.array([[1, 2]])), f.log_prob(np.array([[1.0, 2.0]], np.float32)))


def test_bits_per_dim_checks_bits_on_both_paths():
    g = _image_flow()
    pix = _pixels()
    floats = (pix.astype(np.float32) + 0.5) / 256 - 0.5
    for x in (pix, floats):
        for bits in (0, 9):
            with pytest.raises(Invalid, match="bits %d: must be 1..8" % bits):
                g.bits_per_dim(x, bits=bits)
        with pytest.raises(Invalid, match="must be an integer"):
            g.bits_per_dim(x, bits=5.5)
    assert g.bits_per_dim(floats, bits=5) == pytest.approx(g.bits_per_dim(floats, bits=8) - 3)


def test_zero_rows():
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    g = _image_flow()
    x, pix = moons(64, 1), _pixels()
    # reductions: a clear error
    for call in (lambda: g.bits_per_dim(pix[:0]), lambda: g.bits_per_dim(pix[:0].astype(np.float32))):
        with pytest.raises(Invalid, match="no images"):
            call()
    with pytest.raises(Invalid, match="fit: no rows"):
        f.fit(x[:0], steps=1, progress=False)
    with pytest.raises(Invalid, match="fit: no images"):
        g.fit(pix[:0], steps=1, progress=False)
    # row-by-row maps: empty arrays
    assert f.log_prob(x[:0]).shape == (0,) and f.encode(x[:0]).shape == (0, 2) and f.decode(x[:0]).shape == (0, 2)
    assert f.sample(0).shape == (0, 2) and g.sample(0).shape == (0, 1, 4, 4)
    assert g.log_prob(pix[:0]).shape == (0,) and g.encode(pix[:0]).shape == (0, 16)
    # scikit-learn's estimator
    X = moons(100, 2)
    with pytest.raises(Invalid, match="fit: no rows"):
        FlowDensity(steps=1).fit(X[:0])
    est = FlowDensity(steps=2, depth=2, hidden=8).fit(X)
    with pytest.raises(Invalid, match="score: no rows"):
        est.score(X[:0])
    assert est.score_samples(X[:0]).shape == (0,)


def test_zero_rows_with_labels():
    g = _image_flow(context_dim=2)
    pix = _pixels()
    none = np.zeros(0, dtype=np.int64)
    assert g.sample(0, labels=none).shape == (0, 1, 4, 4)
    assert g.log_prob(pix[:0], labels=none).shape == (0,)
    assert g.class_log_prob(pix[:0]).shape == (0, 2)
    assert g.classify(pix[:0]).shape == (0,)
    with pytest.raises(Invalid, match="labels: 2 integers in 0..1"):
        g.log_prob(pix[:2], labels=[0, 2])


def test_fit_checks_context_and_labels_as_log_prob_does():
    x, pix = moons(64, 3), _pixels()
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    with pytest.raises(Invalid, match="not conditional"):
        f.fit(x, steps=1, labels=np.zeros(64, int), progress=False)
    g = _image_flow()
    with pytest.raises(Invalid, match="not conditional"):
        g.fit(pix, steps=1, context=np.zeros((32, 3)), progress=False)
    assert not g.history_ and not f.history_
    # a class-conditional image model: labels, or one-hot context rows (as log_prob takes them)
    y = np.arange(32) % 2
    a, b = _image_flow(context_dim=2), _image_flow(context_dim=2)
    a.fit(pix, labels=y, steps=2, batch=8, progress=False)
    b.fit(pix, context=np.eye(2)[y], steps=2, batch=8, progress=False)
    np.testing.assert_array_equal(a.log_prob(pix, labels=y), b.log_prob(pix, labels=y))
    with pytest.raises(Invalid, match="one-hot context rows"):
        b.fit(pix, context=np.full((32, 2), 0.5), steps=1, progress=False)
    with pytest.raises(Invalid, match="not both"):
        b.fit(pix, context=np.eye(2)[y], labels=y, steps=1, progress=False)
    with pytest.raises(Invalid, match="give context=.*labels="):
        b.fit(pix, steps=1, progress=False)


def test_non_numbers_are_refused_everywhere():
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    for bad in (np.array([["1", "2"]]), np.array([[1 + 1j, 2]]), np.array([[True, False]]), [[1, None]]):
        for call in (f.log_prob, f.encode, f.decode):
            with pytest.raises(Invalid, match="real number type|not an array of numbers"):
                call(bad)
    fc = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, context_dim=2)
    x = moons(2, 4)
    with pytest.raises(Invalid, match="context: dtype <U1 is not a real number type"):
        fc.log_prob(x[:1], context=[["1", "2"]])
    with pytest.raises(Invalid, match="labels: class labels are for class-conditional image models"):
        fc.log_prob(x, labels=[0, 1])
    with pytest.raises(Invalid, match="labels"):
        _image_flow(context_dim=2).log_prob(_pixels()[:2], labels=[0.0, 1.0])


def test_counts_must_be_integers():
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    x = moons(32, 5)
    for call in (lambda: f.sample(2.7), lambda: f.sample(3.0), lambda: f.sample("2"), lambda: f.sample(True),
                 lambda: f.sample(2, seed=1.5), lambda: f.fit(x, steps=2.5, progress=False),
                 lambda: f.fit(x, steps=1, batch=8.0, progress=False), lambda: f.fit(x, steps=1, warmup=1.5, progress=False),
                 lambda: nflow.Flow("realnvp", dim=2.5), lambda: nflow.Flow("glow", shape=(1, 8.9, 8)),
                 lambda: nflow.set_threads(1.5)):
        with pytest.raises(Invalid, match="must be an integer"):
            call()
    assert not f.history_
    assert f.sample(np.int64(2), seed=np.uint64(3)).shape == (2, 2)  # NumPy integers are integers
    with pytest.raises(Invalid, match="must be an integer"):
        FlowDensity(steps=2, depth=2, hidden=8).fit(x).sample(2.5)


def test_fit_clip_range():
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    x = moons(32, 6)
    for clip in (-1, float("nan"), float("inf"), 1e31):
        with pytest.raises(Invalid, match="clip"):
            f.fit(x, steps=1, clip=clip, progress=False)
    assert not f.history_
    f.fit(x, steps=1, clip=0, progress=False)  # 0: off
    with pytest.raises(Invalid, match="lr"):
        f.fit(x, steps=1, lr=float("nan"), progress=False)


def test_flowdensity_seed_none_is_the_models_default():
    X = moons(100, 7)
    a = FlowDensity(seed=None, steps=3, depth=2, hidden=8).fit(X)
    b = FlowDensity(seed=None, steps=3, depth=2, hidden=8).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))  # the model's seed: reproducible
    assert a.flow_.config["seed"] == nflow.Flow("realnvp", dim=2).config["seed"]
    with pytest.raises(Invalid, match="seed 2.5"):
        FlowDensity(seed=2.5, steps=1).fit(X)


def test_values_beyond_float32_are_named_so():
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    with pytest.raises(Invalid, match="row 1 holds a finite value beyond float32's range"):
        f.log_prob(np.array([[0.0, 0.0], [1e300, 0.0]]))
    with pytest.raises(Invalid, match="row 0 holds a non-finite value"):
        f.decode(np.array([[np.inf, 0.0]]))
    # a finite input the model overflows on: the library's NumericError, naming the row, as the CLI refuses
    with pytest.raises(nflow.NumericError, match="row 0 decodes to a non-finite value"):
        f.decode(np.array([[3e38, 3e38], [0.1, 0.2]]))
    with pytest.raises(nflow.NumericError, match="row 1 encodes to a non-finite value"):
        f.encode(np.array([[0.1, 0.2], [3e38, 3e38]]))


def test_bits_per_dim_of_a_class_conditional_model_takes_labels():
    pix, y = _pixels(64), np.arange(64) % 2
    g = _image_flow(context_dim=2, prior="diag_gaussian")
    g.fit(pix, labels=y, steps=5, batch=16, warmup=0, lr=1e-2, progress=False)
    right, wrong = g.bits_per_dim(pix, labels=y), g.bits_per_dim(pix, labels=1 - y)
    assert right != wrong
    assert g.bits_per_dim(pix, context=np.eye(2)[y]) == right
    # the float path agrees (the bins' centres instead of uniform noise)
    centre = (pix.astype(np.float32) + 0.5) / 256 - 0.5
    assert g.bits_per_dim(centre, labels=y) == pytest.approx(right, abs=0.02)
    with pytest.raises(Invalid, match="conditional on 2 context values"):
        g.bits_per_dim(pix)


def test_fit_ema_averages_whatever_the_sign_of_the_loss():
    """ema > 0 leaves the average in the flow also when the loss is negative (a density above 1: fit
    compared the smoothed loss, not the decay, with 0)."""
    x = np.random.default_rng(1).standard_normal((500, 2)) * 0.01
    a = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, standardize=True).fit(x, steps=30, ema=0.9, progress=False)
    b = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, standardize=True).fit(x, steps=30, ema=0.0, progress=False)
    assert a.history_[-1] < 0
    assert not np.array_equal(a.log_prob(x[:5]), b.log_prob(x[:5]))


def _set_tensor(path, name, values):
    """Rewrite the tensor `name` of the checkpoint at path (safetensors) with values, the CRC-32 of the
    data section in its metadata updated, so that it loads as a model the library never made."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head, data = b[8:8 + n], bytearray(b[8 + n:])
    lo, hi = json.loads(head)[name]["data_offsets"]
    data[lo:hi] = np.asarray(values, dtype="<f4").tobytes()
    old = json.loads(head)["__metadata__"]["data_crc32"]
    head = head.replace(b'"%s"' % old.encode(), b'"%08x"' % zlib.crc32(bytes(data)), 1)
    with open(path, "wb") as fp:
        fp.write(b[:8] + head + bytes(data))


def test_a_model_that_overflows(tmp_path):
    """ActNorm's log-scale at −88: its inverse multiplies by e^88 ≈ 1.7e38, so latents beyond ±2.1 decode
    to inf. decode raises NumericError naming the row; sample returns all rows and warns how many are
    not finite (NumPy's convention), the others as the model makes them."""
    path = str(tmp_path / "g.ckpt")
    nflow.Flow("glow", dim=2, depth=2, hidden=8).save(path)
    _set_tensor(path, "layers.0.log_scale", [-88.0, -88.0])
    f = nflow.Flow.load(path)
    with pytest.raises(nflow.NumericError, match="row 1 decodes to a non-finite value"):
        f.decode(np.array([[0.5, 0.5], [3.0, 0.0]]))
    with pytest.warns(RuntimeWarning, match=r"\d+ of the 1000 samples are not finite") as w:
        x = f.sample(1000, seed=1)
    bad = int((~np.isfinite(x).all(axis=1)).sum())
    assert 0 < bad < 1000 and str(w[0].message).startswith("%d of the 1000" % bad)

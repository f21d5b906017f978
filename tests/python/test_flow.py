"""nflow.Flow against the library and the CLI: round trips, the CLI's numbers, seeds, training, errors,
no-copy passing, the GIL, memory."""
import gzip
import os
import re
import struct
import subprocess
import threading
import time

import numpy as np
import pytest

import nflow
from nflow import _lib
from conftest import ROOT, SANITIZED, moons


def test_version_matches_header_and_library():
    header = open(os.path.join(ROOT, "include", "nflow.h")).read()
    want = re.search(r'#define NFLOW_VERSION "([^"]+)"', header).group(1)
    assert nflow.__version__ == want
    assert nflow.library_version() == want


def test_architecture_keywords_are_the_cli_names():
    f = nflow.Flow("realnvp", dim=3, depth=3, hidden=16, mlp_layers=1, activation="tanh",
                   **{"init-std": 0.02}, perm="reverse", seed=5)
    c = f.config
    assert (c["depth"], c["hidden"], c["layers"], c["activation"], c["perm"], c["seed"]) == (3, 16, 1, "tanh", "reverse", 5)
    assert c["init_std"] == pytest.approx(0.02)
    assert "mlp_layers" in nflow.architecture_options() and "layers" not in nflow.architecture_options()
    # values are parsed by the library's field table (nf_config_set_field)
    with pytest.raises(nflow.InvalidArgumentError, match="field depth: '3x' is not a 32-bit integer"):
        nflow.Flow("realnvp", dim=3, depth="3x")
    with pytest.raises(nflow.InvalidArgumentError, match="field seed: '-1' is not an unsigned 64-bit integer"):
        nflow.Flow("realnvp", dim=3, seed=-1)
    with pytest.raises(nflow.InvalidArgumentError, match="field init_std: 'nan' is not a finite number"):
        nflow.Flow("realnvp", dim=3, init_std=float("nan"))
    assert nflow.Flow("realnvp", dim=3, seed=2 ** 64 - 1).config["seed"] == 2 ** 64 - 1
    assert nflow.Flow("glow", dim=3, coupling=1).config["coupling"] == "additive"  # an enum by number


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(nflow.InvalidArgumentError, match="option 'coupling': the realnvp model does not use it on vector data"):
        nflow.Flow("realnvp", dim=2, coupling="additive")
    with pytest.raises(nflow.InvalidArgumentError, match="option 'levels'"):
        nflow.Flow("glow", dim=2, levels=2)
    with pytest.raises(nflow.InvalidArgumentError, match="option 'standardize'.*image data"):
        nflow.Flow("glow", shape=(1, 4, 4), standardize=True)
    with pytest.raises(nflow.InvalidArgumentError, match="with additive couplings"):
        nflow.Flow("glow", dim=2, coupling="additive", scale="tanh")
    with pytest.raises(nflow.InvalidArgumentError, match="option 'perm': the maf model does not use it on vector data with depth 1"):
        nflow.Flow("maf", dim=4, depth=1, perm="lu")
    with pytest.raises(nflow.InvalidArgumentError, match="option 'batchnorm': the realnvp model"):
        nflow.Flow("realnvp", dim=4, depth=1, batchnorm=1)
    with pytest.raises(nflow.InvalidArgumentError, match="option .bins.: the maf model .* with depth 1 \\(a mixed"):
        nflow.Flow("maf", dim=4, depth=1, transform="mixed", bins=4)  # a mixed maf's first block is affine
    nflow.Flow("glow", dim=2, coupling="affine", scale="tanh", lu=0)  # these apply
    nflow.Flow("maf", dim=4, depth=2, perm="lu", batchnorm=1, transform="mixed", bins=4)


def test_applicability_equals_the_cli_option_table(cli):
    """nf_config_field_applies (what Flow refuses) and `nflow train`'s table (what the CLI refuses)
    state the same facts; `nflow options` prints the CLI's, one option a line."""
    from nflow.flow import _Config, _CLI_TO_FIELD
    rows = subprocess.run([cli, "options"], capture_output=True, text=True, check=True).stdout.splitlines()
    fields, checked = nflow.field_names(), 0
    for row in rows:
        name, _kind, _example, _data, vec, img = row.split("\t")
        key = _CLI_TO_FIELD.get(name.replace("-", "_"), name.replace("-", "_"))
        if key not in fields or key in ("seed", "channels"):  # seed: not architecture; channels: folder data
            continue
        for m, model in enumerate(("nice", "realnvp", "glow", "nsf", "maf", "iaf")):
            for image, cli_models in ((False, vec), (True, img)):
                c = _Config()
                if image:
                    _lib.lib.nf_config_default_image(c.ptr, m, 1, 8, 8)
                else:
                    _lib.lib.nf_config_default(c.ptr, m, 4)
                got = _lib.lib.nf_config_field_applies(c.ptr, key.encode())
                if model in ("maf", "iaf") and key in ("scale", "bins", "bound") and not image:
                    # the table says the model may use them; which apply follows the transform in
                    # effect (mixed on 4 columns: affine and spline blocks, so all three), as the CLI
                    # checks too; with the affine transform bins/bound do not apply
                    assert got == 1, (name, model)
                    c.set("transform", "affine")
                    assert _lib.lib.nf_config_field_applies(c.ptr, key.encode()) == (key == "scale"), (name, model)
                    checked += 1
                    continue
                if key == "prior_components":
                    # the mixture's size: it applies once the prior is the mixture, as the CLI checks too
                    assert got == 0, (name, model)
                    c.set("prior", "gmm")
                    got = _lib.lib.nf_config_field_applies(c.ptr, key.encode())
                if key == "dequant_hidden" and image:
                    # the width of a dequantiser: it applies once the model has one, as the CLI checks too
                    assert got == 0, (name, model)
                    c.set("dequant", "variational")
                    got = _lib.lib.nf_config_field_applies(c.ptr, key.encode())
                assert got == (model in cli_models.split(",")), (name, model, image)
                checked += 1
    assert checked >= 16 * 6


@pytest.mark.parametrize("model,arch", [("realnvp", {}), ("nice", {"init_std": 0.05}),
                                        ("glow", {"init_std": 0.05}), ("realnvp", {"batchnorm": 1, "actnorm": 1})])
def test_encode_decode_round_trip(model, arch):
    x = moons(300, 1) * 3
    f = nflow.Flow(model, dim=2, depth=4, hidden=16, **arch)
    f.fit(x, steps=20, batch=64, progress=False)  # moves the couplings away from the identity
    z, ld = f.encode(x, return_logdet=True)
    assert np.abs(z - x).max() > 1e-3  # not the identity
    back, ld_inv = f.decode(z, return_logdet=True)
    assert np.abs(back - x).max() < 1e-4
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-4)
    # log p(x) = log N(z; 0, I) + log|det| for the normal prior
    if f.config["prior"] == "normal":
        np.testing.assert_allclose(f.log_prob(x), -0.5 * (z.astype(np.float64) ** 2).sum(1) - np.log(2 * np.pi) + ld,
                                   rtol=1e-5, atol=1e-4)


def _eval_out(cli, ckpt, csv, out):
    r = subprocess.run([cli, "eval", "--model", ckpt, "--data", csv, "--out", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.float64), r.stdout


def test_log_prob_equals_cli_eval(cli, tmp_path):
    # a checkpoint trained by the CLI, loaded here; and one trained here, evaluated by the CLI
    ck_cli, ck_py = str(tmp_path / "cli.ckpt"), str(tmp_path / "py.ckpt")
    r = subprocess.run([cli, "train", "--model", "realnvp", "--data", "moons", "--out", ck_cli, "--steps", "30",
                        "--depth", "4", "--hidden", "16", "--train-size", "512", "--test-size", "64", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x = moons(257, 3) * 1.5
    csv = str(tmp_path / "x.csv")
    with open(csv, "w") as fp:
        fp.write("a,b\n")
        for row in x:
            fp.write("%.9g,%.9g\n" % tuple(row))  # exact float32 round trip
    nflow.Flow("realnvp", dim=2, depth=3, hidden=8, standardize=True).fit(x, steps=25, progress=False).save(ck_py)
    for ck in (ck_cli, ck_py):
        ref, stdout = _eval_out(cli, ck, csv, str(tmp_path / "lp.csv"))
        got = nflow.Flow.load(ck).log_prob(x)
        np.testing.assert_array_equal(got, ref.astype(np.float32))
        mean = float(re.search(r"log-likelihood (-?[0-9.]+)", stdout).group(1))
        assert abs(mean - got.mean(dtype=np.float64)) < 1e-4


def test_save_load_same_numbers(tmp_path):
    x = moons(200, 4)
    f = nflow.Flow("glow", dim=2, depth=3, hidden=8, init_std=0.05).fit(x, steps=10, progress=False)
    f.save(tmp_path / "g.ckpt")
    g = nflow.Flow.load(tmp_path / "g.ckpt")
    assert g.config == f.config
    np.testing.assert_array_equal(g.log_prob(x), f.log_prob(x))
    np.testing.assert_array_equal(g.sample(50, seed=9), f.sample(50, seed=9))


def test_column_names(tmp_path, cli):
    f = nflow.Flow("maf", dim=2, depth=2, hidden=8)
    assert f.columns is None
    f.columns = ["age", "income"]
    assert f.columns == ["age", "income"]
    with pytest.raises(nflow.InvalidArgumentError):
        f.columns = ["age"]  # two columns
    with pytest.raises(nflow.InvalidArgumentError):
        f.columns = ["a,b", "c"]
    f.save(tmp_path / "c.ckpt")
    assert nflow.Flow.load(tmp_path / "c.ckpt").columns == ["age", "income"]
    f.columns = None
    assert f.columns is None
    # the CLI keeps a CSV's header
    csv = tmp_path / "named.csv"
    np.savetxt(csv, moons(300, 5), delimiter=",", header="u,v", comments="")
    subprocess.run([cli, "train", "--model", "maf", "--data", str(csv), "--steps", "5", "--batch", "32", "--quiet",
                    "--out", str(tmp_path / "n.ckpt")], check=True, capture_output=True)
    assert nflow.Flow.load(tmp_path / "n.ckpt").columns == ["u", "v"]


def test_pickle_and_deepcopy():
    import copy
    import pickle
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, standardize=True).fit(moons(128, 2) * 4, steps=5, progress=False)
    x = moons(20, 3)
    for g in (pickle.loads(pickle.dumps(f)), copy.deepcopy(f)):
        assert g._ptr.value != f._ptr.value and g.history_ == f.history_
        np.testing.assert_array_equal(g.log_prob(x), f.log_prob(x))


def test_sampling_reproducible_by_seed():
    f = nflow.Flow("realnvp", dim=3, depth=2, hidden=8, init_std=0.1)
    a, b, c = f.sample(100, seed=42), f.sample(100, seed=42), f.sample(100, seed=43)
    assert a.shape == (100, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(f.sample(10), f.sample(10))  # seed None: fresh
    # temperature scales the prior: T = 0 decodes the prior's mode
    np.testing.assert_array_equal(f.sample(4, temperature=0.0, seed=1), f.decode(np.zeros((4, 3), np.float32)))
    assert np.std(f.encode(f.sample(2000, temperature=0.5, seed=3))) == pytest.approx(0.5, rel=0.1)


def test_fit_beats_a_single_gaussian():
    train, test = moons(2000, 10), moons(1000, 11)
    mu, cov = train.mean(0, dtype=np.float64), np.cov(train.T.astype(np.float64))
    d = test - mu
    gauss = -0.5 * np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d) - 0.5 * np.log(np.linalg.det(2 * np.pi * cov))
    seen = []
    f = nflow.Flow("realnvp", dim=2, depth=6, hidden=32, standardize=True)
    f.fit(train, steps=400, batch=256, lr=3e-3, callback=lambda s, loss, gn: seen.append((s, loss)), progress=False)
    assert [s for s, _ in seen] == list(range(1, 401)) and len(f.history_) == 400
    flow_ll = float(f.log_prob(test).mean(dtype=np.float64))
    assert flow_ll > gauss.mean() + 0.3, (flow_ll, gauss.mean())
    # callback returning False stops
    g = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    g.fit(train, steps=100, callback=lambda s, loss, gn: s < 7, progress=False)
    assert len(g.history_) == 7


def test_fit_ema_keeps_the_average():
    """ema > 0: the flow ends with the moving average of the parameters, not the last iterate (the same
    trajectory, so the two differ only by the average); outside [0, 1) it is refused."""
    train = moons(512, 12)
    a = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, seed=3)
    b = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, seed=3)
    a.fit(train, steps=60, batch=64, progress=False)
    b.fit(train, steps=60, batch=64, progress=False, ema=0.9)
    assert a.history_ == b.history_  # averaging does not change the steps
    x = moons(200, 13)
    assert not np.array_equal(a.log_prob(x), b.log_prob(x))
    with pytest.raises(nflow.InvalidArgumentError):
        nflow.Flow("realnvp", dim=2, depth=2, hidden=8).fit(train, steps=1, ema=1.0, progress=False)


def test_progress_line(capfd):
    nflow.Flow("realnvp", dim=2, depth=2, hidden=8).fit(moons(64, 0), steps=40, batch=16)
    err = capfd.readouterr().err
    assert "step 40/40" in err and "nats" in err


def test_progress_bar_is_tqdm_where_installed(monkeypatch, capfd):
    import sys
    import types
    seen = {"n": 0}

    class FakeTqdm:  # stands in for tqdm.tqdm: the same calls
        def __init__(self, total, unit, desc):
            seen["total"] = total

        def update(self, k):
            seen["n"] += k

        def set_postfix_str(self, s, refresh=False):
            seen["post"] = s

        def close(self):
            seen["closed"] = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    nflow.Flow("realnvp", dim=2, depth=2, hidden=8).fit(moons(64, 0), steps=12, batch=16)
    assert seen["total"] == 12 and seen["n"] == 12 and seen["closed"] and "nats" in seen["post"]
    assert "nflow fit:" not in capfd.readouterr().err  # no plain line beside the bar


def test_errors_are_exceptions(tmp_path):
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8)
    with pytest.raises(nflow.InvalidArgumentError, match=r"shape \(5, 3\)"):
        f.log_prob(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):  # an InvalidArgumentError is a ValueError too
        f.encode(np.zeros(2, np.float32))
    with pytest.raises(nflow.InvalidArgumentError, match="row 3 holds a non-finite value"):
        x = np.zeros((5, 2), np.float32)
        x[3, 1] = np.nan
        f.log_prob(x)
    with pytest.raises(nflow.InvalidArgumentError, match="non-finite"):
        f.fit(np.full((8, 2), np.inf), steps=1, progress=False)
    with pytest.raises(nflow.InvalidArgumentError, match="unknown architecture option 'dpth'"):
        nflow.Flow("realnvp", dim=2, dpth=3)
    with pytest.raises(nflow.InvalidArgumentError, match="unknown activation 'swish'"):
        nflow.Flow("realnvp", dim=2, activation="swish")
    with pytest.raises(nflow.InvalidArgumentError, match="depth 0"):  # nf_config_validate's reason
        nflow.Flow("realnvp", dim=2, depth=0)
    with pytest.raises(nflow.InvalidArgumentError, match="batch size 99"):  # the trainer's reason
        f.fit(np.zeros((10, 2), np.float32), steps=1, batch=99, progress=False)
    # files: missing, foreign, truncated
    with pytest.raises(nflow.FileIOError) as e:
        nflow.Flow.load(tmp_path / "none.ckpt")
    assert "none.ckpt" in str(e.value) and e.value.status == "NF_ERR_IO"
    foreign = tmp_path / "foreign.ckpt"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(nflow.FileFormatError, match="foreign.ckpt"):
        nflow.Flow.load(foreign)
    f.save(tmp_path / "good.ckpt")
    data = (tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(nflow.FileFormatError, match="cut.ckpt"):
        nflow.Flow.load(tmp_path / "cut.ckpt")
    # a file of JSON that is safetensors-shaped but not an nflow checkpoint
    meta = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    (tmp_path / "other.safetensors").write_bytes(struct.pack("<Q", len(meta)) + meta + b"\0\0\0\0")
    with pytest.raises(nflow.FileFormatError):
        nflow.Flow.load(tmp_path / "other.safetensors")
    f.close()
    with pytest.raises(nflow.InvalidArgumentError, match="closed"):
        f.log_prob(np.zeros((1, 2), np.float32))


def _spy(monkeypatch, name):
    """Record the arguments of every call of the library function name (then call it)."""
    real, calls = getattr(_lib.lib, name), []

    def spy(*args):
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(_lib.lib, name, spy)
    return calls


def test_float32_c_contiguous_passed_without_copy(monkeypatch):
    f = nflow.Flow("realnvp", dim=4, depth=2, hidden=8, init_std=0.1)
    calls = _spy(monkeypatch, "nf_flow_log_prob")
    x = np.random.default_rng(0).standard_normal((33, 4)).astype(np.float32)
    ref = f.log_prob(x)
    assert calls[-1][1] == x.ctypes.data  # the caller's buffer itself
    for other in (x.astype(np.float64), np.asfortranarray(x), np.repeat(x, 2, axis=0)[::2]):
        got = f.log_prob(other)
        assert calls[-1][1] != other.ctypes.data  # converted once, into a buffer of its own
        np.testing.assert_array_equal(got, ref)
    calls = _spy(monkeypatch, "nf_flow_forward_ctx")
    z = f.encode(x)
    assert calls[-1][1] == x.ctypes.data
    calls = _spy(monkeypatch, "nf_flow_inverse_ctx")
    f.decode(z)
    assert calls[-1][1] == z.ctypes.data


def test_gil_released_during_library_calls():
    f = nflow.Flow("realnvp", dim=16, depth=4, hidden=64)
    old = nflow.get_threads()
    nflow.set_threads(1)  # the library's call on one core, this thread's loop on the other
    # enough rows that one call lasts ≥ 0.1 s on this machine (a fixed 4 000 took 8 ms on a fast one,
    # under the 0.02 s the check needs)
    n = 4000
    while True:
        x = np.random.default_rng(1).standard_normal((n, 16)).astype(np.float32)
        t0 = time.perf_counter()
        f.log_prob(x)
        if time.perf_counter() - t0 >= 0.1 or n >= 4096000:
            break
        n *= 4
    started, done = threading.Event(), threading.Event()
    real = _lib.lib.nf_flow_log_prob
    spans = []

    out = np.empty(len(x), np.float32)

    def work():
        started.set()
        t0 = time.perf_counter()
        real(f._ptr, x.ctypes.data, out.ctypes.data, len(x))
        spans.append((t0, time.perf_counter()))
        done.set()

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    ticks = []
    while not done.is_set():  # Python work in this thread while the library computes in the other
        ticks.append(time.perf_counter())
    t.join()
    nflow.set_threads(old)
    t0, t1 = spans[0]
    inside = sum(1 for s in ticks if t0 < s < t1)
    assert t1 - t0 > 0.02, "the call was too short to tell"
    assert inside > 1000, "only %d Python iterations ran during a %.3f s library call: the GIL was held" % (inside, t1 - t0)


def test_threads_do_not_change_results():
    f = nflow.Flow("realnvp", dim=8, depth=4, hidden=64, init_std=0.1)
    x = np.random.default_rng(2).standard_normal((2048, 8)).astype(np.float32)
    old = nflow.get_threads()
    try:
        nflow.set_threads(1)
        a = f.log_prob(x)
        nflow.set_threads(2)
        assert nflow.get_threads() == 2
        np.testing.assert_array_equal(f.log_prob(x), a)
    finally:
        nflow.set_threads(old)
    with pytest.raises(nflow.InvalidArgumentError):
        nflow.set_threads(0)


def _write_idx(path, pix):
    n, _, h, w = pix.shape
    with gzip.open(path, "wb") as fp:
        fp.write(struct.pack(">IIII", 0x803, n, h, w) + pix.tobytes())


def test_image_model(cli, tmp_path):
    rng = np.random.default_rng(5)
    pix = (rng.random((48, 1, 8, 8)) ** 2 * 255).astype(np.uint8)
    pix[:, :, :, :2] = 0  # structure to learn
    f = nflow.Flow("glow", shape=(1, 8, 8), depth=2, hidden=8, levels=2)
    f.fit(pix, steps=30, batch=16, lr=3e-3, progress=False)
    assert f.history_[-1] < f.history_[0]
    # uint8 input = float pixels at the centre of their bins, in the library's scale [-0.5, 0.5)
    centre = (pix.astype(np.float32) + 0.5) / 256 - 0.5
    np.testing.assert_array_equal(f.log_prob(pix), f.log_prob(centre))
    s = f.sample(5, temperature=0.7, seed=2)
    assert s.shape == (5, 1, 8, 8) and s.dtype == np.float32
    z = f.encode(pix[:4])
    assert z.shape == (4, 64)
    assert np.abs(f.decode(z) - centre[:4]).max() < 1e-4
    # bits/dim of the uint8 images = nflow eval's on the same checkpoint and images
    f.save(tmp_path / "img.ckpt")
    _write_idx(tmp_path / "x-idx3-ubyte.gz", pix)
    r = subprocess.run([cli, "eval", "--model", str(tmp_path / "img.ckpt"), "--data", str(tmp_path / "x-idx3-ubyte.gz")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[0]) == pytest.approx(f.bits_per_dim(pix), abs=1e-4)
    back, _ = nflow.load_idx(tmp_path / "x-idx3-ubyte.gz")
    np.testing.assert_array_equal(back, pix)
    # variational dequantisation from Python: trains, and its bits/dim (the bound with log q) are the CLI's
    v = nflow.Flow("glow", shape=(1, 8, 8), depth=2, hidden=8, levels=2, dequant="variational", dequant_hidden=4)
    v.fit(pix, steps=30, batch=16, lr=3e-3, progress=False)
    assert v.history_[-1] < v.history_[0]
    v.save(tmp_path / "vd.ckpt")
    r = subprocess.run([cli, "eval", "--model", str(tmp_path / "vd.ckpt"), "--data", str(tmp_path / "x-idx3-ubyte.gz")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[0]) == pytest.approx(v.bits_per_dim(pix), abs=1e-4)
    with pytest.raises(nflow.InvalidArgumentError, match="uint8 images"):
        f.fit(pix[:, :, :4, :4], steps=1)


@pytest.mark.skipif(SANITIZED, reason="under ASan freed blocks sit in its quarantine, so RSS is no leak measure "
                                      "(ASan itself checks every access there)")
def test_memory_stable_over_repeated_calls(tmp_path):
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as fp:
            return int(fp.read().split()[1]) * page

    x = moons(1024, 7)
    f = nflow.Flow("realnvp", dim=2, depth=4, hidden=32, standardize=True).fit(x, steps=5, progress=False)
    f.save(tmp_path / "m.ckpt")

    def round_():
        f.log_prob(x)
        f.decode(f.encode(x))
        f.sample(512, seed=1)
        g = nflow.Flow.load(tmp_path / "m.ckpt")
        g.fit(x, steps=2, batch=128, progress=False)
        g.close()
        try:
            f.log_prob(np.zeros((3, 5)))
        except nflow.NflowError:
            pass

    for _ in range(20):
        round_()
    before = rss()
    for _ in range(150):
        round_()
    grown = rss() - before
    # a flow (~20 KB of parameters, ~0.3 MB of workspace) or a batch of rows lost per round would show
    assert grown < 2 << 20, "RSS grew by %.1f MiB over 150 rounds" % (grown / 2 ** 20)


def test_conditional_flow():
    """context_dim > 0: p(x | c). x = (2·c1, −c2) + noise 0.2: the conditional model's held-out log p(x | c)
    is far above an unconditional model's log p(x), and its samples follow the context."""
    rng = np.random.default_rng(5)
    def table(n):
        c = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
        return np.stack([2 * c[:, 0], -c[:, 1]], 1) + 0.2 * rng.standard_normal((n, 2)).astype(np.float32), c
    x, c = table(3000)
    xt, ct = table(500)
    cond = nflow.Flow("realnvp", dim=2, depth=4, hidden=32, context_dim=2)
    assert cond.context_dim == 2
    cond.fit(x, context=c, steps=400, batch=128, lr=3e-3, progress=False)
    plain = nflow.Flow("realnvp", dim=2, depth=4, hidden=32).fit(x, steps=400, batch=128, lr=3e-3, progress=False)
    assert cond.log_prob(xt, context=ct).mean() > plain.log_prob(xt).mean() + 2
    s = cond.sample(400, seed=3, context=np.tile([[1.0, -1.0]], (400, 1)))
    assert abs(s[:, 0].mean() - 2) < 0.4 and abs(s[:, 1].mean() - 1) < 0.4
    # z = f(x; c): near-standard latents with the right contexts, far out with the wrong ones; decode
    # with the same contexts gives x back, and log p(x | c) = log π(z) + log|det|
    z, ld = cond.encode(xt, context=ct, return_logdet=True)
    assert (z ** 2).mean() < 2 and (cond.encode(xt, context=ct[::-1]) ** 2).mean() > 10
    np.testing.assert_allclose(cond.decode(z, context=ct), xt, atol=1e-4)
    lp = -0.5 * (z.astype(np.float64) ** 2).sum(1) - np.log(2 * np.pi) + ld
    np.testing.assert_allclose(lp, cond.log_prob(xt, context=ct), atol=1e-3)
    with pytest.raises(nflow.InvalidArgumentError, match="conditional"):
        cond.log_prob(xt)
    with pytest.raises(nflow.InvalidArgumentError, match="conditional"):
        cond.encode(xt)
    with pytest.raises(nflow.InvalidArgumentError, match="not conditional"):
        plain.decode(z, context=ct)
    with pytest.raises(nflow.InvalidArgumentError, match="not conditional"):
        plain.log_prob(xt, context=ct)


def test_class_conditional_images_classify():
    """A class-conditional image flow (dark against bright 8 × 8 images) as a classifier by Bayes' rule:
    class_log_prob's column y is log_prob with labels y, and argmax over the classes finds the class."""
    rng = np.random.default_rng(7)
    y = np.arange(96) % 2
    pix = np.clip(np.where(y[:, None, None, None] == 1, 200, 50) + rng.integers(-20, 20, (96, 1, 8, 8)), 0, 255).astype(np.uint8)
    f = nflow.Flow("glow", shape=(1, 8, 8), depth=2, hidden=8, levels=1, context_dim=2, prior="diag_gaussian")
    f.fit(pix[:64], labels=y[:64], steps=400, batch=16, lr=3e-3, progress=False)
    lp = f.class_log_prob(pix[64:])
    assert lp.shape == (32, 2)
    np.testing.assert_array_equal(lp[:, 1], f.log_prob(pix[64:], labels=np.ones(32, dtype=np.int64)))
    assert (f.classify(pix[64:]) == y[64:]).mean() >= 0.95
    with pytest.raises(nflow.InvalidArgumentError, match="class-conditional"):
        nflow.Flow("glow", shape=(1, 8, 8), depth=1, hidden=4, levels=1).classify(pix[:2])


def test_plot_png(tmp_path):
    """plot: the CLI's three panels for a 2-D model (width 3 × size), a row per context row for a
    conditional one (height R × size); what cannot apply is refused."""
    import struct

    def dims(p):
        b = open(p, "rb").read(24)
        assert b[:8] == b"\x89PNG\r\n\x1a\n"
        return struct.unpack(">II", b[16:24])
    x = np.random.default_rng(2).standard_normal((500, 2)).astype(np.float32)
    f = nflow.Flow("realnvp", dim=2, depth=2, hidden=8).fit(x, steps=20, progress=False)
    f.plot(tmp_path / "p.png", data=x, size=64)
    assert dims(tmp_path / "p.png") == (192, 64)
    c = nflow.Flow("realnvp", dim=2, depth=2, hidden=8, context_dim=1)
    c.fit(x, context=x[:, :1] * 0.5, steps=20, progress=False)
    c.plot(str(tmp_path / "c.png"), context=[[-1.0], [0.0], [1.0]], size=48)
    assert dims(tmp_path / "c.png") == (144, 144)
    with pytest.raises(nflow.InvalidArgumentError, match="conditional on 1 context"):
        c.plot(tmp_path / "n.png")
    with pytest.raises(nflow.InvalidArgumentError, match="takes no data"):
        c.plot(tmp_path / "n.png", data=x, context=[[0.0]])
    with pytest.raises(nflow.InvalidArgumentError, match="1 to 16 context rows"):
        c.plot(tmp_path / "n.png", context=np.zeros((17, 1)))
    with pytest.raises(nflow.InvalidArgumentError, match="not conditional"):
        f.plot(tmp_path / "n.png", context=[[0.0]])
    with pytest.raises(nflow.InvalidArgumentError, match="3-dimensional"):
        nflow.Flow("realnvp", dim=3, depth=2, hidden=8).plot(tmp_path / "n.png")
    assert not (tmp_path / "n.png").exists()


def test_gmm_prior(tmp_path):
    """prior="gmm": a learned mixture base. Two far clusters: its fit beats the normal prior's with the
    same flow and budget; the mixture's parameters survive a checkpoint; samples land in both clusters."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(-4, 0.5, (1500, 2)), rng.normal(4, 0.5, (1500, 2))]).astype(np.float32)
    rng.shuffle(x)
    arch = dict(depth=2, hidden=16, transform="affine")
    g = nflow.Flow("maf", dim=2, prior="gmm", prior_components=2, **arch)
    assert g.config["prior"] == "gmm" and g.config["prior_components"] == 2
    g.fit(x, steps=400, batch=256, lr=3e-3, progress=False)
    n = nflow.Flow("maf", dim=2, **arch).fit(x, steps=400, batch=256, lr=3e-3, progress=False)
    assert g.log_prob(x).mean() > n.log_prob(x).mean() + 0.1
    g.save(tmp_path / "g.ckpt")
    h = nflow.Flow.load(tmp_path / "g.ckpt")
    np.testing.assert_array_equal(h.log_prob(x[:50]), g.log_prob(x[:50]))
    s = g.sample(2000, seed=1)
    assert 0.3 < (s[:, 0] > 0).mean() < 0.7
    np.testing.assert_array_equal(s, g.sample(2000, seed=1))
    with pytest.raises(nflow.InvalidArgumentError, match="prior_components"):
        nflow.Flow("maf", dim=2, prior="gmm", prior_components=65)


def test_gmm_full_prior(tmp_path):
    """prior="gmm_full": a mixture of full-covariance Gaussians. Two clusters tilted opposite ways (correlation
    +0.9 and -0.9): its fit comes within 0.05 nats of the data's own density, its samples carry both
    correlations, the lower-triangular factors survive a checkpoint; more than 64 dimensions are refused."""
    rng = np.random.default_rng(4)
    covs = [0.25 * np.array([[1, r], [r, 1]]) for r in (0.9, -0.9)]
    means = [np.array([0.0, -3.0]), np.array([0.0, 3.0])]
    x = np.concatenate([rng.normal(size=(1500, 2)) @ np.linalg.cholesky(c).T + m for c, m in zip(covs, means)]).astype(np.float32)
    rng.shuffle(x)
    dens = sum(0.5 * np.exp(-0.5 * np.einsum("ni,ij,nj->n", x - m, np.linalg.inv(c), x - m)) / (2 * np.pi * np.sqrt(np.linalg.det(c)))
               for c, m in zip(covs, means))
    g = nflow.Flow("maf", dim=2, prior="gmm_full", prior_components=2, depth=1, hidden=4, transform="affine")
    assert g.config["prior"] == "gmm_full" and g.num_params == nflow.Flow("maf", dim=2, prior="gmm", prior_components=2, depth=1, hidden=4,
                                                                          transform="affine").num_params + 2  # one tril value a component
    g.fit(x, steps=2000, batch=256, lr=1e-2, progress=False)
    assert g.log_prob(x).mean() > np.log(dens).mean() - 0.05
    s = g.sample(4000, seed=1)
    for side, r in ((s[:, 1] < 0, 0.9), (s[:, 1] > 0, -0.9)):
        assert abs(np.corrcoef(s[side].T)[0, 1] - r) < 0.05
    g.save(tmp_path / "g.ckpt")
    np.testing.assert_array_equal(nflow.Flow.load(tmp_path / "g.ckpt").log_prob(x[:50]), g.log_prob(x[:50]))
    with pytest.raises(nflow.InvalidArgumentError, match="at most 64 dimensions"):
        nflow.Flow("maf", dim=65, prior="gmm_full")
    assert nflow.Flow("maf", dim=1, prior="gmm_full").log_prob(np.zeros((2, 1), np.float32)).shape == (2,)  # 1-D: no off-diagonal

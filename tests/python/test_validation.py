"""Flow.fit(validation=...) and FlowDensity's table defaults: rows held out as nflow train holds them out,
scored on schedule, early stopping, and the flow kept being the best scored one (or the last step's)."""
import numpy as np
import pytest

import nflow
from nflow.flow import _split_rows
from nflow.sklearn import FlowDensity

Invalid = nflow.InvalidArgumentError


def _pairs(n, seed=0):
    r = np.random.default_rng(seed)
    a = r.normal(size=(n, 1))
    return np.hstack([a, 1.5 * np.sin(2 * a) + 0.2 * r.normal(size=(n, 1))]).astype(np.float32)


def _val_nll(flow, X, frac):
    """The mean NLL of the rows fit held out (the same split: seed + 1)."""
    (_, _), (v, _) = _split_rows(X, None, frac, flow.config["seed"] + 1)
    return -float(np.mean(flow.log_prob(v), dtype=np.float64))


@pytest.mark.parametrize("ema", [0.0, 0.999])
def test_early_stopping_keeps_the_best_scored_model(ema):
    X = _pairs(1500)
    f = nflow.Flow("maf", dim=2, hidden=32)
    # a high rate and no decay: the validation score wanders, so a later step is not always the best
    f.fit(X, steps=4000, lr=1e-2, validation=0.2, eval_every=50, patience=4, ema=ema, progress=False)
    steps, scores = zip(*f.val_history_)
    assert list(steps) == list(range(50, steps[-1] + 1, 50))  # stopped on a scheduled score
    best = min(range(len(scores)), key=lambda i: scores[i])
    assert f.best_step_ == steps[best]
    assert len(f.history_) == steps[-1] < 4000  # stopped early: patience scores without a better one
    assert steps[-1] - f.best_step_ == 4 * 50
    assert _val_nll(f, X, 0.2) == pytest.approx(scores[best], abs=1e-5)  # the flow holds that model


def test_the_last_step_is_kept_when_it_scores_best():
    X = _pairs(1500, 1)
    f = nflow.Flow("maf", dim=2, hidden=16)
    f.fit(X, steps=230, lr=3e-3, validation=0.1, eval_every=100, patience=0, progress=False)
    assert [s for s, _ in f.val_history_] == [100, 200, 230]  # scheduled, and the last step's
    if f.val_history_[-1][1] < min(v for _, v in f.val_history_[:-1]):
        assert f.best_step_ == 230
    assert _val_nll(f, X, 0.1) == pytest.approx(dict(f.val_history_)[f.best_step_], abs=1e-5)


def test_without_validation_nothing_is_held_out():
    X = _pairs(300)
    f = nflow.Flow("maf", dim=2, hidden=8).fit(X, steps=20, progress=False)
    assert f.val_history_ == [] and f.best_step_ is None and len(f.history_) == 20


def test_validation_refusals():
    X = _pairs(10)
    f = nflow.Flow("maf", dim=2, hidden=8)
    with pytest.raises(Invalid, match="too few to hold out"):
        f.fit(X[:1], steps=1, validation=0.1, progress=False)
    with pytest.raises(Invalid, match="validation 0.95"):
        f.fit(X, steps=1, validation=0.95, progress=False)
    with pytest.raises(Invalid, match="lr \\* weight_decay"):
        f.fit(X, steps=1, lr=0.5, weight_decay=2.0, progress=False)
    g = nflow.Flow("glow", shape=(1, 4, 4), depth=1, hidden=4, levels=1)
    with pytest.raises(Invalid, match="validation: rows only"):
        g.fit(np.zeros((4, 1, 4, 4), dtype=np.uint8), steps=1, validation=0.1, progress=False)


def test_flow_density_trains_as_nflow_train_on_a_table():
    est = FlowDensity()
    p = est.get_params()
    assert (p["model"], p["steps"], p["ema"], p["validation"], p["eval_every"], p["patience"], p["weight_decay"]) == \
        ("maf", 20000, 0.999, 0.1, 100, 20, None)
    X = _pairs(2000, 2)
    est = FlowDensity(steps=300, eval_every=50, patience=2).fit(X)
    cfg = est.flow_.config
    assert (cfg["activation"], cfg["depth"], cfg["prior"]) == ("tanh", 3, "gmm") and est.best_step_ is not None
    assert [s for s, _ in est.val_history_][:2] == [50, 100]
    # the vector architecture options reach the flow; a given depth / prior replaces the table default
    est = FlowDensity(steps=2, transform="affine", order="reverse", prior_components=3, depth=2).fit(X)
    cfg = est.flow_.config
    assert (cfg["transform"], cfg["order"], cfg["prior_components"], cfg["depth"], cfg["prior"]) == ("affine", "reverse", 3, 2, "gmm")
    assert FlowDensity(steps=2, prior="normal").fit(X).flow_.config["prior"] == "normal"


def test_contexts_follow_their_rows():
    r = np.random.default_rng(3)
    C = r.normal(size=(600, 1)).astype(np.float32)
    X = np.hstack([C + 0.1 * r.normal(size=(600, 1)), r.normal(size=(600, 1))]).astype(np.float32)
    f = nflow.Flow("maf", dim=2, context_dim=1, hidden=16)
    f.fit(X, context=C, steps=300, validation=0.2, eval_every=50, patience=0, progress=False)
    (_, _), (vx, vc) = _split_rows(X, C, 0.2, f.config["seed"] + 1)
    assert len(vx) == 120 and np.abs(vx[:, 0] - vc[:, 0]).max() < 0.6  # each held-out row with its own context
    assert -float(np.mean(f.log_prob(vx, context=vc), dtype=np.float64)) == pytest.approx(dict(f.val_history_)[f.best_step_], abs=1e-5)


def test_weight_decay_none_is_nflow_trains_rule():
    # weight_decay=None: 0.1 * 16200 / (rows after the validation rows are held out) above 16 200 rows,
    # here 0.1 * 16200 / 18000 = 0.09 for 20 000 rows and validation 0.1; the same steps as 0.09 given
    X = _pairs(20000)
    a = nflow.Flow("maf", dim=2, hidden=8, seed=3)
    b = nflow.Flow("maf", dim=2, hidden=8, seed=3)
    c = nflow.Flow("maf", dim=2, hidden=8, seed=3)
    kw = dict(steps=20, lr=1e-2, validation=0.1, eval_every=10, patience=0, progress=False)
    a.fit(X, weight_decay=None, **kw)
    b.fit(X, weight_decay=0.09, **kw)
    c.fit(X, weight_decay=0.1, **kw)
    assert np.array_equal(a.log_prob(X[:50]), b.log_prob(X[:50]))
    assert not np.array_equal(a.log_prob(X[:50]), c.log_prob(X[:50]))

"""nflow.sklearn.FlowDensity: scikit-learn's estimator conventions, and GridSearchCV over it."""
import numpy as np
import pytest

from nflow.sklearn import FlowDensity
from conftest import moons

sklearn = pytest.importorskip("sklearn", reason="python3-sklearn is not installed")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402


def test_params_protocol():
    est = FlowDensity(depth=3, hidden=16, steps=10)
    p = est.get_params()
    assert p["depth"] == 3 and p["hidden"] == 16 and p["steps"] == 10 and p["model"] == "maf"
    assert est.set_params(hidden=8) is est and est.hidden == 8
    c = clone(est)
    assert c is not est and c.get_params() == est.get_params()
    with pytest.raises(ValueError):
        est.set_params(no_such_option=1)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        est.score_samples(np.zeros((2, 2)))


def test_fit_score_sample():
    X = moons(600, 20).astype(np.float64) * 10 + 100  # unscaled data: the standardize layer handles it
    est = FlowDensity(depth=4, hidden=16, steps=150, lr=3e-3).fit(X)
    assert est.n_features_in_ == 2 and len(est.history_) == 150
    s = est.score_samples(X[:50])
    assert s.shape == (50,) and s.dtype == np.float64
    assert est.score(X[:50]) == pytest.approx(s.mean())
    a, b = est.sample(20, random_state=3), est.sample(20, random_state=3)
    assert a.shape == (20, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, est.sample(20, random_state=np.random.RandomState(3)))
    assert abs(a[:, 0].mean() - 105) < 10  # samples in the data's scale
    with pytest.raises(ValueError, match="shape"):
        est.score_samples(np.zeros((3, 5)))


def test_grid_search():
    X = moons(800, 21)
    grid = GridSearchCV(FlowDensity(depth=4, steps=120, lr=3e-3), {"hidden": [2, 32]}, cv=2)
    grid.fit(X)
    scores = grid.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert grid.best_params_ == {"hidden": 32}, scores  # a width-2 net is clearly worse on moons
    assert isinstance(grid.best_estimator_, FlowDensity) and grid.best_estimator_.hidden == 32
    assert grid.score(X) == pytest.approx(grid.best_estimator_.score(X))

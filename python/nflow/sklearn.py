"""nflow.sklearn.FlowDensity: a flow as a scikit-learn density estimator (as KernelDensity and
GaussianMixture: fit, score_samples, score, sample), usable in Pipeline and GridSearchCV.

Its parameters carry the CLI's option names of `nflow train` ('-' written '_'): model, the architecture
(depth, hidden, mlp_layers, activation, ...; None keeps the model's default) and the training options
(steps, batch, lr, warmup, clip, lr_schedule, seed, weight_decay, ema, validation, eval_every,
patience), with `nflow train`'s defaults for a CSV table: FlowDensity().fit(X) trains as
`nflow train --model maf --data X.csv` does on its training rows (the CLI first sets a --test-frac of
the file aside). scikit-learn is optional: without it the class
keeps get_params/set_params of its own and works the same outside sklearn's tools.
"""
import inspect

import numpy as np

from .flow import Flow, architecture_options
from ._lib import invalid

try:
    from sklearn.base import BaseEstimator, DensityMixin
except ImportError:  # a minimal equivalent of sklearn's parameter protocol
    class BaseEstimator:
        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {k: getattr(self, k) for k in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for k, v in params.items():
                if k not in valid:
                    raise ValueError("invalid parameter %r for estimator %s (valid: %s)" % (k, type(self).__name__, ", ".join(valid)))
                setattr(self, k, v)
            return self

        def __repr__(self):
            return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in self.get_params().items()))

    class DensityMixin:
        _estimator_type = "DensityEstimator"

        def score(self, X, y=None):
            return float(np.mean(self.score_samples(X)))

_ARCH = [a for a in architecture_options() if a not in ("standardize", "seed")]


def _seed_of(random_state):
    """A 63-bit seed from None, an int, a numpy RandomState or Generator."""
    if random_state is None:
        return None
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2 ** 31 - 1)) << 32 | int(random_state.randint(0, 2 ** 31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 63 - 1))
    raise ValueError("random_state %r: None, an int, a RandomState or a Generator" % (random_state,))


class FlowDensity(DensityMixin, BaseEstimator):
    """Density estimation with a normalizing flow of libnflow.

    Parameters (None: the model's default, as `nflow train` has it for a CSV table):
      model: "maf" (the default: autoregressive blocks, nflow train's choice for tables), "nice",
        "realnvp", "glow", "nsf" or "iaf". maf and iaf take tanh MADEs unless activation is given, and
        three blocks (depth 3) over the learned mixture prior (prior "gmm") unless depth / prior are.
      depth, hidden, mlp_layers, activation, scale, partition, perm, prior, prior_components, coupling,
      lu, batchnorm, actnorm, init_std, transform, bins, bound, order, elementwise: the architecture (see
      `nflow train --help`).
      standardize: per-column standardisation layer from the training data (default True: nflow
        train's choice for data files).
      steps, batch, lr, warmup, clip, lr_schedule: the training (nflow train's defaults for a table:
        steps 20000, early stopping ends sooner; batch at most the rows). seed: initialisation, the
        validation rows and batches (1; an integer; None: the model's default seed, as Flow and Flow.fit
        take seed=None).
      weight_decay: AdamW decay (None: 0.1, or 0.1 * 16200 / rows above 16 200 training rows, as nflow
        train on a CSV). ema: Polyak averaging of the parameters (0.999; 0: none).
      validation, eval_every, patience: the fraction of the rows held out (0.1; 0: none), scored every
        eval_every steps (100); stop after patience scores without a better one (20; 0: never); the
        flow kept is the best scored one or the last step's (Flow.fit).
      threads: OpenMP threads for the library (None: leave as set).
      verbose: show the progress line.
    Attributes after fit: flow_ (the nflow.Flow), n_features_in_, history_ (loss per step, nats),
    val_history_ ((step, validation NLL) pairs), best_step_ (the step of the parameters kept).
    """

    def __init__(self, model="maf", depth=None, hidden=None, mlp_layers=None, activation=None, scale=None,
                 partition=None, perm=None, prior=None, coupling=None, lu=None, batchnorm=None, actnorm=None,
                 init_std=None, transform=None, bins=None, bound=None, order=None, elementwise=None,
                 prior_components=None, standardize=True, steps=20000, batch=None, lr=1e-3, warmup=None, clip=None,
                 lr_schedule="constant", seed=1, threads=None, verbose=False, weight_decay=None, ema=0.999,
                 validation=0.1, eval_every=100, patience=20):
        self.model = model
        self.depth = depth
        self.hidden = hidden
        self.mlp_layers = mlp_layers
        self.activation = activation
        self.scale = scale
        self.partition = partition
        self.perm = perm
        self.prior = prior
        self.coupling = coupling
        self.lu = lu
        self.batchnorm = batchnorm
        self.actnorm = actnorm
        self.init_std = init_std
        self.transform = transform
        self.bins = bins
        self.bound = bound
        self.order = order
        self.elementwise = elementwise
        self.prior_components = prior_components
        self.standardize = standardize
        self.steps = steps
        self.batch = batch
        self.lr = lr
        self.warmup = warmup
        self.clip = clip
        self.lr_schedule = lr_schedule
        self.seed = seed
        self.threads = threads
        self.verbose = verbose
        self.weight_decay = weight_decay
        self.ema = ema
        self.validation = validation
        self.eval_every = eval_every
        self.patience = patience

    def _X(self, X, what=None):
        """X as a 2-D array; what (the method's name): a reduction over the rows, which refuses none."""
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as e:
            raise invalid("X: not an array of numbers (%s)" % e) from None
        if X.ndim != 2:
            raise invalid("X: expected a 2-D array (n_samples, n_features), got shape %s" % (X.shape,))
        if what is not None and X.shape[0] == 0:
            raise invalid("%s: no rows (X has shape %s)" % (what, X.shape))
        return X

    def fit(self, X, y=None):
        """Fit the flow to the rows of X (n_samples, n_features); y is ignored. Returns self."""
        from . import set_threads
        X = self._X(X, "fit")
        if self.threads is not None:
            set_threads(self.threads)
        arch = {k: getattr(self, k) for k in _ARCH if getattr(self, k, None) is not None}
        seed = self.seed
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
                raise invalid("seed %r: an integer, or None for the model's default" % (seed,))
            arch["seed"] = int(seed)
        if self.model in ("maf", "iaf"):  # nflow train on a table: tanh MADEs, 3 blocks over the mixture
            for k, v in (("activation", "tanh"), ("depth", 3), ("prior", "gmm")):
                if getattr(self, k) is None:
                    arch[k] = v
        flow = Flow(self.model, dim=X.shape[1], standardize=self.standardize, **arch)
        flow.fit(X, steps=self.steps, batch=self.batch, lr=self.lr, warmup=self.warmup, clip=self.clip,
                 lr_schedule=self.lr_schedule, seed=None if seed is None else int(seed), progress=self.verbose,
                 weight_decay=self.weight_decay, ema=self.ema, validation=self.validation, eval_every=self.eval_every,
                 patience=self.patience)
        self.flow_ = flow
        self.n_features_in_ = X.shape[1]
        self.history_ = flow.history_
        self.val_history_, self.best_step_ = flow.val_history_, flow.best_step_
        return self

    def _check_fitted(self):
        if not hasattr(self, "flow_"):
            try:
                from sklearn.exceptions import NotFittedError
            except ImportError:
                NotFittedError = AttributeError
            raise NotFittedError("this FlowDensity is not fitted yet; call fit first")

    def score_samples(self, X):
        """log p(x) in nats of every row of X, float64 (n_samples,)."""
        self._check_fitted()
        return self.flow_.log_prob(self._X(X)).astype(np.float64)

    def score(self, X, y=None):
        """Mean log-likelihood (nats per sample) of X: what GridSearchCV maximises."""
        self._check_fitted()
        return float(np.mean(self.score_samples(self._X(X, "score")), dtype=np.float64))

    def sample(self, n_samples=1, random_state=None):
        """n_samples draws from the fitted density, float64 (n_samples, n_features); the same int
        random_state gives the same draws."""
        self._check_fitted()
        return self.flow_.sample(n_samples, seed=_seed_of(random_state)).astype(np.float64)

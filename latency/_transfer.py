"""``transfer``: few-shot latency on a new device from the latency tables of source devices.

Two stages, both in log-latency (devices differ by factors, not offsets):

1. **Source side** (fitted once per ``sources`` and cached in the instance). One ridge model
   per source device from the architecture encoding to its log-latency, on shared features:
   the encoding itself plus a Nystroem map of a degree-2 polynomial kernel (pairwise
   interactions, e.g. "a 3x3 conv on this edge *and* on that one", without enumerating them;
   the landmarks are drawn with ``random_state``). Each source is fitted on its own
   architectures, so sources measured on different subsets need no imputation; sources that
   share their rows share one factorisation. The result is a latent description of every
   architecture, ``z(x)``: its predicted log-latency on each source device.

2. **Device head** (fitted on the new device's few measurements, seconds or less). Bayesian
   linear regression of the new device's log-latency on the standardised ``z(x)`` columns,
   plus a small linear term on the encoding for what no source explains. The prior says
   "the new device is close to *one* source device, up to scale and offset, with small
   corrections from the others": one hypothesis per anchor source (and one with no anchor)
   times a grid of prior scales and noise levels. Every hypothesis is a Gaussian model
   whose marginal likelihood is exact; the prediction averages their posterior means with
   the posterior weights (Bayesian model averaging). With 10 measurements this picks the
   right sibling device when there is one and mixes several when there is none; with more
   measurements the corrections take over. All hypotheses are linear in ``z(x)`` and ``x``,
   so the fitted head collapses to one intercept and two coefficient vectors.

The prediction is ``exp`` of the log-latency: the median latency, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["TransferLatencyModel"]

# the head's hypothesis grid (log-latency units): prior scale of the corrections from all
# sources (tau), of the encoding's own linear term (rho) and the noise level (sigma)
_TAUS_ANCHORED = (0.01, 0.03, 0.1, 0.3, 1.0)
_TAUS_FREE = (0.1, 0.3, 1.0, 3.0)
_RHOS = (0.003, 0.03, 0.1)
_SIGMAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
_INTERCEPT_VAR = 100.0  # a flat prior on the new device's overall speed
_ANCHOR_VAR = 4.0  # slope on the anchor source: anything from "half as spread" to "twice" is plausible


def _check_latencies(y: Any, name: str, n_rows: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: got a non-numeric array; valid: latencies in milliseconds") from e
    if arr.ndim != 1:
        raise ValueError(f"{name}: got an array of shape {arr.shape}; valid: one latency per architecture (1-D)")
    if n_rows is not None and len(arr) != n_rows:
        raise ValueError(f"{name}: got {len(arr)} latencies for {n_rows} architectures; they must match")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite latencies; pass only the measured architectures")
    if np.any(arr <= 0):
        raise ValueError(f"{name}: contains a latency <= 0 ({arr.min()!r} ms); valid: latencies > 0 ms")
    if len(arr) < 2:
        raise ValueError(f"{name}: got {len(arr)} measurement(s); valid: at least 2")
    return arr


def _check_sources(sources: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, X, y_ms)]`` in a stable (sorted) order, or a ValueError naming what is wrong."""
    if not isinstance(sources, Mapping) or not sources:
        got = type(sources).__name__ if not isinstance(sources, Mapping) else "an empty mapping"
        raise ValueError(f"sources: got {got}; valid: a non-empty mapping device name -> (X, latency_ms)")
    out = []
    width = None
    for name in sorted(sources, key=str):
        field = f"sources[{name!r}]"
        if not isinstance(name, str) or not name:
            raise ValueError(f"sources: got the key {name!r}; valid: non-empty device names (str)")
        pair = sources[name]
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{field}: got {type(pair).__name__}; valid: a pair (X, latency_ms)")
        try:
            X = np.asarray(pair[0], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{field}: X is not a numeric array; valid: the space's encoding of the archs") from e
        if X.ndim != 2 or X.shape[1] == 0:
            raise ValueError(f"{field}: X has shape {X.shape}; valid: a 2-D encoding (architectures x features)")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{field}: X contains NaN or infinite values")
        y = _check_latencies(pair[1], field, n_rows=len(X))
        if width is not None and X.shape[1] != width[1]:
            raise ValueError(f"{field}: X has {X.shape[1]} features but sources[{width[0]!r}] has {width[1]}; "
                             "every source must use the same encoding")
        width = width or (name, X.shape[1])
        out.append((name, X, y))
    return out


def _row_keys(X: np.ndarray) -> np.ndarray:
    """One hashable scalar per row (for unions and duplicates of architectures)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    return X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()


class _SourceModel:
    """Stage 1: shared features and one ridge per source, predicting every source's log-latency."""

    def __init__(self, sources: list[tuple[str, np.ndarray, np.ndarray]], n_landmarks: int, alpha: float,
                 random_state: int | None) -> None:
        self.names = [name for name, _, _ in sources]
        # the union of the sources' architectures (arrays passed more than once are read once)
        arrays: dict[int, np.ndarray] = {}
        for _, X, _ in sources:
            arrays.setdefault(id(X), X)
        keys = {i: _row_keys(X) for i, X in arrays.items()}
        all_keys = np.concatenate(list(keys.values()))
        uniq, first = np.unique(all_keys, return_index=True)
        U = np.concatenate(list(arrays.values()))[first]
        self.scale = float(np.sqrt(np.mean(np.sum(U ** 2, axis=1)))) or 1.0
        rng = np.random.default_rng(random_state)
        m = min(n_landmarks, len(U))
        self.landmarks = U[np.sort(rng.choice(len(U), size=m, replace=False))] / self.scale
        w, V = np.linalg.eigh(self._kernel(self.landmarks))
        keep = w > 1e-8 * w.max()
        self.whiten = V[:, keep] / np.sqrt(w[keep])
        F = self.features(U)
        self.f_mean = F.mean(axis=0)
        F -= self.f_mean
        # sources measured on the same rows share one factorisation
        groups: dict[bytes, list[int]] = {}
        rows_of: list[np.ndarray] = []
        Ys: list[np.ndarray] = []
        for j, (_, X, y) in enumerate(sources):
            k, inv = np.unique(keys[id(X)], return_inverse=True)
            yl = np.bincount(inv, weights=np.log(y)) / np.bincount(inv)  # duplicates: mean log-latency
            rows_of.append(np.searchsorted(uniq, k))
            Ys.append(yl)
            groups.setdefault(rows_of[-1].tobytes(), []).append(j)
        self.coef = np.zeros((F.shape[1], len(sources)))
        self.intercept = np.zeros(len(sources))
        for members in groups.values():
            rows = rows_of[members[0]]
            A = F[rows]
            Y = np.stack([Ys[j] for j in members], axis=1)
            a_mean, y_mean = A.mean(axis=0), Y.mean(axis=0)
            A = A - a_mean
            G = A.T @ A
            G[np.diag_indices_from(G)] += alpha * len(rows) / len(U)
            c = np.linalg.cholesky(G)
            W = solve_triangular(c.T, solve_triangular(c, A.T @ (Y - y_mean), lower=True), lower=False)
            self.coef[:, members] = W
            self.intercept[members] = y_mean - a_mean @ W
        # the head's standardisation: each source's predictions over all source architectures
        Z = F @ self.coef + self.intercept
        self.z_mean, self.z_std = Z.mean(axis=0), Z.std(axis=0) + 1e-9
        Xs = U / self.scale
        self.x_mean = Xs.mean(axis=0)
        self.x_norm = float(np.mean(np.sum((Xs - self.x_mean) ** 2, axis=1))) or 1.0

    def _kernel(self, Xs: np.ndarray) -> np.ndarray:
        return (Xs @ self.landmarks.T + 1.0) ** 2

    def features(self, X: np.ndarray) -> np.ndarray:
        Xs = X / self.scale
        return np.concatenate([Xs, self._kernel(Xs) @ self.whiten], axis=1)

    def predict_log(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_sources)`` predicted log-latencies."""
        return (self.features(X) - self.f_mean) @ self.coef + self.intercept

    def head_design(self, X: np.ndarray) -> np.ndarray:
        """``[R | E]``: standardised source predictions and the centred, scaled encoding."""
        R = (self.predict_log(X) - self.z_mean) / self.z_std
        E = (X / self.scale - self.x_mean) / np.sqrt(self.x_norm)
        return np.concatenate([R, E], axis=1)


def _hypotheses(n_sources: int) -> np.ndarray:
    """The head's hypotheses, one row each: ``(anchor or -1, tau^2, rho^2, sigma^2)``."""
    rows = [(a, tau ** 2, rho ** 2, sigma ** 2)
            for a in [-1, *range(n_sources)]
            for tau in (_TAUS_FREE if a < 0 else _TAUS_ANCHORED)
            for rho in _RHOS
            for sigma in _SIGMAS]
    return np.array(rows, dtype=np.float64)


def _prior_variances(hyp: np.ndarray, n_sources: int, n_features: int) -> np.ndarray:
    """``(H, 1 + S + d)`` prior variances of the weights on ``[1 | R | E]``."""
    lam = np.empty((len(hyp), 1 + n_sources + n_features))
    lam[:, 0] = _INTERCEPT_VAR
    lam[:, 1:1 + n_sources] = hyp[:, 1:2] / n_sources
    lam[:, 1 + n_sources:] = hyp[:, 2:3]
    anchored = np.flatnonzero(hyp[:, 0] >= 0)
    lam[anchored, 1 + hyp[anchored, 0].astype(int)] += _ANCHOR_VAR
    return lam


def _posterior(R: np.ndarray, E: np.ndarray, t: np.ndarray, hyp: np.ndarray, dual: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Log marginal likelihoods ``(H,)`` and posterior mean weights ``(H, 1 + S + d)`` of the
    Gaussian models ``t = [1 | R | E] w + e``, ``w ~ N(0, diag(prior))``, ``e ~ N(0, sigma^2 I)``.

    The dual form (``n x n`` systems) when there are fewer measurements than weights, else the
    primal (``p x p``); both are exact and agree (the tests check it).
    """
    n, S = R.shape
    Phi = np.concatenate([np.ones((n, 1)), R, E], axis=1)
    p = Phi.shape[1]
    dual = n <= p if dual is None else dual
    lam_all = _prior_variances(hyp, S, E.shape[1])
    logev = np.empty(len(hyp))
    weights = np.empty((len(hyp), p))
    chunk = max(1, int(4e6 // (min(n, p) ** 2 + 1)))
    diag = np.arange(n if dual else p)
    if dual:
        # K = 100 11' + tau^2/S RR' + rho^2 EE' + 4 r_a r_a' + sigma^2 I, from a few n x n blocks
        J, Krr, Kee = np.ones((n, n)), R @ R.T / S, E @ E.T
        for lo in range(0, len(hyp), chunk):
            h = hyp[lo:lo + chunk]
            K = (_INTERCEPT_VAR * J[None] + h[:, 1, None, None] * Krr[None] + h[:, 2, None, None] * Kee[None])
            anchored = np.flatnonzero(h[:, 0] >= 0)
            ra = R[:, h[anchored, 0].astype(int)].T  # (k, n)
            K[anchored] += _ANCHOR_VAR * ra[:, :, None] * ra[:, None, :]
            K[:, diag, diag] += h[:, 3, None]
            c = np.linalg.cholesky(K)
            v = _solve(c, np.broadcast_to(t, (len(h), n)))
            a = _solve(np.swapaxes(c, 1, 2), v)
            logev[lo:lo + chunk] = -0.5 * np.sum(v ** 2, axis=1) - np.log(np.diagonal(c, axis1=1, axis2=2)).sum(axis=1)
            weights[lo:lo + chunk] = lam_all[lo:lo + chunk] * (a @ Phi)
    else:
        G, b, tt = Phi.T @ Phi, Phi.T @ t, float(t @ t)
        for lo in range(0, len(hyp), chunk):
            lam, s2 = lam_all[lo:lo + chunk], hyp[lo:lo + chunk, 3]
            A = G[None] / s2[:, None, None]
            A[:, diag, diag] += 1.0 / lam
            c = np.linalg.cholesky(A)
            v = _solve(c, b[None] / s2[:, None])
            logev[lo:lo + chunk] = (-0.5 * (tt / s2 - np.sum(v ** 2, axis=1))
                                    - np.log(np.diagonal(c, axis1=1, axis2=2)).sum(axis=1)
                                    - 0.5 * np.log(lam).sum(axis=1) - 0.5 * n * np.log(s2))
            weights[lo:lo + chunk] = _solve(np.swapaxes(c, 1, 2), v)
    return logev, weights


def _solve(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``c^-1 b`` for a stack of (triangular) matrices ``(h, m, m)`` and right-hand sides ``(h, m)``."""
    return np.linalg.solve(c, b[..., None])[..., 0]


class TransferLatencyModel(RegressorMixin, BaseEstimator):
    """Few-shot latency on a new device, transferred from the latency tables of ``sources``.

    Parameters
    ----------
    sources : mapping ``device name -> (X, latency_ms)``
        What other devices measured: the encodings (``space.encode(archs)``) and their
        latencies in milliseconds (finite, > 0). Each device may have measured a different
        subset of architectures. Keep the same mapping object between fits: the source side is
        fitted once per ``sources`` object (and per ``n_landmarks``, ``alpha``,
        ``random_state``) and reused, so refitting on new measurements of the device takes
        milliseconds. (Changing the arrays *in place* is not noticed: pass a new mapping.)
    target : Target, optional
        The new device's Target; kept for provenance (the model is valid only for it).
    n_landmarks : int
        Landmarks of the Nystroem map of the degree-2 polynomial kernel (source side).
    alpha : float
        Ridge penalty of the per-source models, on features scaled to unit norm and per
        architecture (a source that measured fewer architectures is shrunk in proportion).
    random_state : int or None
        Seeds the choice of landmarks; the rest is deterministic.

    ``fit(X, y)`` takes the new device's measurements (as few as 2; 10 is the intended use);
    ``predict(X)`` returns milliseconds on the new device. Fitted attributes: ``source_names_``,
    ``anchor_weights_`` (posterior probability that the new device is "like" each source;
    the rest is the no-anchor hypothesis), ``intercept_``, ``coef_sources_`` (on the sources'
    predicted log-latencies), ``coef_features_`` (on ``X``), ``n_features_in_``.
    """

    def __init__(self, sources: Mapping[str, tuple[Any, Any]] | None = None, target: Any = None,
                 n_landmarks: int = 400, alpha: float = 0.1, random_state: int | None = 0) -> None:
        self.sources = sources
        self.target = target
        self.n_landmarks = n_landmarks
        self.alpha = alpha
        self.random_state = random_state

    # -- stage 1 ----------------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.n_landmarks, bool) or not isinstance(self.n_landmarks, (int, np.integer)) \
                or self.n_landmarks < 1:
            raise ValueError(f"n_landmarks: got {self.n_landmarks!r}; valid: an integer >= 1")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float, np.floating)) \
                or not np.isfinite(self.alpha) or not self.alpha > 0:
            raise ValueError(f"alpha: got {self.alpha!r}; valid: a finite number > 0")

    def _fit_sources(self) -> _SourceModel:
        """The source side, reused while ``sources`` is the same object and its parameters did not change."""
        self._check_params()
        key = (self.n_landmarks, self.alpha, self.random_state)
        cached = getattr(self, "_source_cache", None)
        if cached is not None and cached[0] is self.sources and cached[1] == key:
            return cached[2]
        model = _SourceModel(_check_sources(self.sources), int(self.n_landmarks), float(self.alpha),
                             self.random_state)
        self._source_cache = (self.sources, key, model)
        return model

    # -- stage 2 ----------------------------------------------------------------------
    def fit(self, X, y) -> TransferLatencyModel:
        """Fit the head on the new device's measurements ``(X, y)`` (milliseconds); returns self."""
        source = self._fit_sources()
        y_arr = np.asarray(y)
        if hasattr(X, "__len__") and y_arr.ndim == 1 and len(X) != len(y_arr):
            raise ValueError(f"y: got {len(y_arr)} latencies for {len(X)} architectures in X; they must match")
        t = np.log(_check_latencies(y, "y"))
        X = validate_data(self, X, reset=True, dtype=np.float64)
        d = source.landmarks.shape[1]
        if X.shape[1] != d:
            raise ValueError(f"X: got {X.shape[1]} features; the sources' encodings have {d}")
        S = len(source.names)
        design = source.head_design(X)
        t_mean = float(t.mean())
        hyp = _hypotheses(S)
        logev, W = _posterior(design[:, :S], design[:, S:], t - t_mean, hyp)
        post = np.exp(logev - logsumexp(logev))
        w = post @ W  # the model average of the posterior means
        # collapse to: log-latency = intercept_ + z(x) @ coef_sources_ + x @ coef_features_
        w_R, w_E = w[1:1 + S] / source.z_std, w[1 + S:] / np.sqrt(source.x_norm)
        self.source_model_ = source
        self.intercept_ = float(t_mean + w[0] - w_R @ source.z_mean - w_E @ source.x_mean)
        self.coef_sources_ = w_R
        self.coef_features_ = w_E / source.scale
        anchors = hyp[:, 0].astype(int)
        self.source_names_ = list(source.names)
        self.anchor_weights_ = {name: float(post[anchors == j].sum()) for j, name in enumerate(source.names)}
        return self

    def predict_log(self, X) -> np.ndarray:
        """Predicted natural-log latency (log-milliseconds) on the new device."""
        check_is_fitted(self, "coef_sources_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.intercept_ + self.source_model_.predict_log(X) @ self.coef_sources_ + X @ self.coef_features_

    def predict(self, X) -> np.ndarray:
        """Predicted latency on the new device, in milliseconds (the median under the model)."""
        return np.exp(self.predict_log(X))

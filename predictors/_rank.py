"""Learning-to-rank predictors in torch (AceNAS, methods §2): ``lambdarank`` and ``ranknet``.

An MLP over ``space.encode`` features. ``fit`` can first pretrain the trunk on cheap weak
labels (FLOPs, params, zero-cost proxies: one regression head each, z-scored, MSE), then
fine-tunes a ranking head on the true labels with the LambdaRank gradient (ΔNDCG-weighted
pairwise lambdas, fed to ``scores.backward``) or the RankNet pairwise loss.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_fit_input

__all__ = ["RankMLP", "RankNetMLP", "relevance"]

# pretrained trunks by a digest of (weak data, settings): the engine refits its ranker every
# round (and several times for cross-validation) on the same weak pool; pretraining once per
# process instead of every fit turns seconds into milliseconds, with the same result
_PRETRAINED: dict[str, dict] = {}


def _quantile(ref_sorted: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mid-rank quantile of each ``v`` among ``ref_sorted`` (ties split evenly), in [0, 1]."""
    lo = np.searchsorted(ref_sorted, v, side="left")
    hi = np.searchsorted(ref_sorted, v, side="right")
    return (lo + hi) / (2.0 * len(ref_sorted))


def _digest(*parts) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(repr((p.shape, p.dtype.str)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def relevance(y: np.ndarray, q20: float, top: float, scale: float = 20.0) -> np.ndarray:
    """AceNAS's graded relevance: ``clip((y - q20) / (max - q20), 0, 1) * 20``."""
    span = top - q20
    return np.clip((y - q20) / span, 0.0, 1.0) * scale if span > 0 else np.full_like(y, scale)


def _lambdas(scores, rel, y, sigma: float, floor: float):
    """LambdaRank's gradient with respect to the scores of one batch (methods §2.2).

    ``floor`` adds a uniform pairwise weight (``floor`` times the mean |ΔNDCG| of the batch)
    to every pair with different labels, including pairs below the 20th percentile that the
    graded relevance ties at 0: with ``floor = 0`` this is AceNAS's LambdaRank, exact at the
    top and blind below; a small floor keeps the top-heavy weighting and also orders the rest.
    """
    import torch

    with torch.no_grad():
        n = len(rel)
        order = torch.argsort(rel, descending=True)
        rank = torch.empty(n, dtype=torch.float64)
        rank[order] = torch.arange(1, n + 1, dtype=torch.float64)
        gain = torch.pow(2.0, rel) - 1.0
        disc = 1.0 / torch.log2(1.0 + rank)
        idcg = float((torch.sort(gain, descending=True).values * (1.0 / torch.log2(torch.arange(2, n + 2)))).sum())
        norm = 1.0 / idcg if idcg > 0 else 0.0
        delta = torch.abs(norm * (gain[:, None] - gain[None, :]) * (disc[:, None] - disc[None, :]))
        S = torch.sign(y[:, None] - y[None, :])
        if floor > 0:
            pairs = delta[S != 0]
            delta = delta + floor * (float(pairs.mean()) if len(pairs) and float(pairs.mean()) > 0 else 1.0)
        s = scores.detach().double()
        lam = sigma * (0.5 * (1 - S) - 1.0 / (1.0 + torch.exp(sigma * (s[:, None] - s[None, :])))) * delta
        lam = lam * (S != 0)  # equal labels: no preference
        return lam.sum(dim=1).to(scores.dtype)


class RankMLP(RegressorMixin, BaseEstimator):
    """``lambdarank`` (default) or ``ranknet``: a higher prediction means a better architecture.

    ``fit(X, y, weak_X=None, weak_y=None)``: with weak labels (one column per proxy, any
    number of rows, typically many more than ``X``), the trunk is pretrained on them first.
    Deterministic for a ``random_state`` (torch runs single-threaded inside ``fit``).
    """

    def __init__(self, loss: str = "lambdarank", hidden: int = 64, epochs: int = 150, lr: float = 5e-3,
                 weight_decay: float = 5e-4, batch_size: int = 20, pretrain_epochs: int = 60, sigma: float = 1.0,
                 pretrain_batch_size: int = 128, prior: str = "rf", floor: float = 0.5,
                 max_steps: int = 1500, random_state: int | None = None) -> None:
        self.loss = loss
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.pretrain_epochs = pretrain_epochs
        self.sigma = sigma
        self.pretrain_batch_size = pretrain_batch_size
        self.prior = prior
        self.floor = floor
        self.max_steps = max_steps
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.prior not in ("rf", "none"):
            raise ValueError(f"prior: got {self.prior!r}; valid: rf, none")
        if self.loss not in ("lambdarank", "ranknet"):
            raise ValueError(f"loss: got {self.loss!r}; valid: lambdarank, ranknet")
        for name in ("hidden", "epochs", "batch_size", "pretrain_batch_size", "max_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: got {v!r}; valid: an integer >= 1")
        if self.floor is True or self.floor is False:
            raise ValueError(f"floor: got {self.floor!r}; valid: a number >= 0")
        if not isinstance(self.pretrain_epochs, int) or isinstance(self.pretrain_epochs, bool) or self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs: got {self.pretrain_epochs!r}; valid: an integer >= 0")
        if not (isinstance(self.floor, (int, float)) and np.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"floor: got {self.floor!r}; valid: a number >= 0")
        for name in ("lr", "sigma"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"{name}: got {v!r}; valid: a finite number > 0")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, (int, np.integer)) or not 0 <= rs < 2**31):
            raise ValueError(f"random_state: got {rs!r}; valid: None or an integer in [0, 2**31)")

    def fit(self, X, y, sample_weight=None, weak_X=None, weak_y=None) -> RankMLP:
        import torch

        self._check_params()
        X, y = check_fit_input(X, y)
        if np.asarray(y).ndim > 1 and np.asarray(y).shape[1] != 1:
            raise ValueError(f"y: got {np.asarray(y).shape[1]} columns; a ranker learns one order (1 column)")
        y = np.asarray(y, dtype=np.float64).ravel()
        self.n_features_in_ = X.shape[1]
        if (weak_X is None) != (weak_y is None):
            raise ValueError("weak_X, weak_y: give both or neither")
        if weak_X is not None:
            weak_X = np.asarray(weak_X, dtype=np.float64)
            weak_y = np.asarray(weak_y, dtype=np.float64)
            weak_y = weak_y.reshape(-1, 1) if weak_y.ndim <= 1 else weak_y
            if weak_X.ndim != 2 or weak_X.shape[1] != X.shape[1]:
                raise ValueError(f"weak_X: got shape {weak_X.shape}; it needs {X.shape[1]} columns like X")
            if not np.all(np.isfinite(weak_X)):
                raise ValueError("weak_X: contains NaN or infinite values; every feature must be finite")
            if weak_y.ndim not in (1, 2):
                raise ValueError(f"weak_y: got {weak_y.ndim} dimensions; give one row per row of weak_X")
            if len(weak_y) != len(weak_X):
                raise ValueError(f"weak_y: got {len(weak_y)} rows for {len(weak_X)} rows of weak_X; give one per row")
            if np.isinf(weak_y).any():
                raise ValueError("weak_y: infinite values; use NaN for a score that is missing")
            keep = np.isfinite(weak_y).sum(axis=0) >= 2  # a column needs two known values to teach anything
            weak_y = weak_y[:, keep]
        # inputs are standardised by the weak pool when there is one, so the pretrained trunk
        # does not depend on which labelled rows come with it (and can be reused, see _PRETRAINED)
        pool = X if weak_X is None or not len(weak_X) else weak_X
        self.x_mean_ = pool.mean(axis=0)
        self.x_std_ = np.where(pool.std(axis=0) > 0, pool.std(axis=0), 1.0)

        seed = int(self.random_state or 0)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small nets: threads cost more than they give, and break determinism
        try:
            torch.manual_seed(seed)
            trunk = torch.nn.Sequential(torch.nn.Linear(X.shape[1], self.hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU())
            head = torch.nn.Linear(self.hidden, 1)
            if weak_X is not None and len(weak_X) and self.pretrain_epochs:
                key = _digest(weak_X, weak_y, self.hidden, self.pretrain_epochs, self.pretrain_batch_size, seed)
                if key not in _PRETRAINED:
                    self._pretrain(trunk, weak_X, weak_y, torch.Generator().manual_seed(seed))
                    _PRETRAINED[key] = {k: v.clone() for k, v in trunk.state_dict().items()}
                    while len(_PRETRAINED) > 8:
                        _PRETRAINED.pop(next(iter(_PRETRAINED)))
                trunk.load_state_dict(_PRETRAINED[key])
            self._finetune(trunk, head, X, y, torch.Generator().manual_seed(seed + 1))
        finally:
            torch.set_num_threads(threads)
        self.model_ = torch.nn.Sequential(trunk, head).eval()
        self.prior_ = None
        if self.prior == "rf":
            from ._forest import ForestPredictor

            self.prior_ = ForestPredictor(random_state=seed).fit(X, y)
            # each score becomes its quantile within a reference population (the weak pool, or
            # the training rows), and the two quantiles are averaged: an average of ranks, yet
            # pointwise, so an architecture's score does not depend on what it is predicted with
            ref = weak_X if weak_X is not None and len(weak_X) else X
            self.blend_ = [np.sort(self._mlp(ref)), np.sort(self.prior_.predict(ref))]
        return self

    def _tensor(self, X):
        import torch

        return torch.as_tensor((np.asarray(X, dtype=np.float64) - self.x_mean_) / self.x_std_, dtype=torch.float32)

    def _pretrain(self, trunk, weak_X, weak_y, gen) -> None:
        import torch

        if weak_y.shape[1] == 0:
            return
        # each column becomes its quantile, then is z-scored: proxies are heavy-tailed (FLOPs,
        # synflow) and only their order carries the signal. NaN (a score unknown for that
        # architecture) is masked out of the loss.
        from scipy.stats import rankdata

        q = np.full(weak_y.shape, np.nan)
        for j in range(weak_y.shape[1]):
            ok = np.isfinite(weak_y[:, j])
            q[ok, j] = rankdata(weak_y[ok, j]) / ok.sum()
        mean, std = np.nanmean(q, axis=0), np.nanstd(q, axis=0)
        z = (q - mean) / np.where(std > 0, std, 1.0)
        known = torch.as_tensor(np.isfinite(z))
        heads = torch.nn.Linear(self.hidden, z.shape[1])
        params = list(trunk.parameters()) + list(heads.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        Xt, Zt = self._tensor(weak_X), torch.as_tensor(np.nan_to_num(z), dtype=torch.float32)
        for _ in range(self.pretrain_epochs):
            for idx in torch.randperm(len(Xt), generator=gen).split(self.pretrain_batch_size):
                opt.zero_grad()
                err = (heads(trunk(Xt[idx])) - Zt[idx]) ** 2
                mask = known[idx]
                (err[mask].sum() / mask.sum().clamp_min(1)).backward()
                opt.step()

    def _finetune(self, trunk, head, X, y, gen) -> None:
        import torch

        params = list(trunk.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        Xt = self._tensor(X)
        yt = torch.as_tensor(y, dtype=torch.float64)
        rel = torch.as_tensor(relevance(y, float(np.quantile(y, 0.2)), float(y.max())), dtype=torch.float64)
        # at most ``max_steps`` updates: beyond a few hundred labels, more epochs cost linear time
        # and change the order little (N <= 200, the benchmark's sizes, are not capped)
        n_batches = -(-len(Xt) // self.batch_size)
        for _ in range(max(1, min(self.epochs, self.max_steps // n_batches))):
            for idx in torch.randperm(len(Xt), generator=gen).split(self.batch_size):
                if len(idx) < 2:
                    continue
                opt.zero_grad()
                s = head(trunk(Xt[idx])).squeeze(1)
                if self.loss == "lambdarank":
                    s.backward(_lambdas(s, rel[idx], yt[idx], self.sigma, self.floor))
                else:
                    diff = s[:, None] - s[None, :]
                    target = (yt[idx][:, None] > yt[idx][None, :]).float()
                    mask = (yt[idx][:, None] != yt[idx][None, :])
                    if not mask.any():
                        continue
                    torch.nn.functional.binary_cross_entropy_with_logits(diff[mask], target[mask]).backward()
                opt.step()

    def _mlp(self, X) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model_(self._tensor(X)).squeeze(1).double().numpy()

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False)
        if self.prior_ is None:
            return self._mlp(X)
        return 0.5 * (_quantile(self.blend_[0], self._mlp(X)) + _quantile(self.blend_[1], self.prior_.predict(X)))


class RankNetMLP(RankMLP):
    """``ranknet``: the same MLP with the pairwise RankNet loss."""

    def __init__(self, loss: str = "ranknet", hidden: int = 64, epochs: int = 150, lr: float = 5e-3,
                 weight_decay: float = 5e-4, batch_size: int = 20, pretrain_epochs: int = 60, sigma: float = 1.0,
                 pretrain_batch_size: int = 128, prior: str = "rf", floor: float = 0.5,
                 max_steps: int = 1500, random_state: int | None = None) -> None:
        super().__init__(loss=loss, hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, pretrain_epochs=pretrain_epochs, sigma=sigma,
                         pretrain_batch_size=pretrain_batch_size, prior=prior, floor=floor,
                         max_steps=max_steps, random_state=random_state)

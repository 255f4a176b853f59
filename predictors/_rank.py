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


def relevance(y: np.ndarray, q20: float, top: float, scale: float = 20.0) -> np.ndarray:
    """AceNAS's graded relevance: ``clip((y - q20) / (max - q20), 0, 1) * 20``."""
    span = top - q20
    return np.clip((y - q20) / span, 0.0, 1.0) * scale if span > 0 else np.full_like(y, scale)


def _lambdas(scores, rel, sigma: float):
    """LambdaRank's gradient with respect to the scores of one batch (methods §2.2)."""
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
        S = torch.sign(rel[:, None] - rel[None, :])
        s = scores.detach().double()
        lam = sigma * (0.5 * (1 - S) - 1.0 / (1.0 + torch.exp(sigma * (s[:, None] - s[None, :])))) * delta
        lam = lam * (S != 0)  # equal relevance: no preference
        return lam.sum(dim=1).to(scores.dtype)


class RankMLP(RegressorMixin, BaseEstimator):
    """``lambdarank`` (default) or ``ranknet``: a higher prediction means a better architecture.

    ``fit(X, y, weak_X=None, weak_y=None)``: with weak labels (one column per proxy, any
    number of rows, typically many more than ``X``), the trunk is pretrained on them first.
    Deterministic for a ``random_state`` (torch runs single-threaded inside ``fit``).
    """

    def __init__(self, loss: str = "lambdarank", hidden: int = 64, epochs: int = 150, lr: float = 5e-3,
                 weight_decay: float = 5e-4, batch_size: int = 20, pretrain_epochs: int = 60, sigma: float = 1.0,
                 random_state: int | None = None) -> None:
        self.loss = loss
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.pretrain_epochs = pretrain_epochs
        self.sigma = sigma
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.loss not in ("lambdarank", "ranknet"):
            raise ValueError(f"loss: got {self.loss!r}; valid: lambdarank, ranknet")
        for name in ("hidden", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: got {v!r}; valid: an integer >= 1")
        if not isinstance(self.pretrain_epochs, int) or self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs: got {self.pretrain_epochs!r}; valid: an integer >= 0")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr: got {self.lr!r}; valid: a number > 0")

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
            weak_y = np.asarray(weak_y, dtype=np.float64).reshape(len(weak_X), -1) if len(weak_X) else weak_y
            if weak_X.ndim != 2 or weak_X.shape[1] != X.shape[1]:
                raise ValueError(f"weak_X: got shape {weak_X.shape}; it needs {X.shape[1]} columns like X")
            if len(weak_y) != len(weak_X) or not np.all(np.isfinite(weak_y)):
                raise ValueError("weak_y: needs one finite row per row of weak_X")
        pool = X if weak_X is None else np.vstack([X, weak_X])
        self.x_mean_ = pool.mean(axis=0)
        self.x_std_ = np.where(pool.std(axis=0) > 0, pool.std(axis=0), 1.0)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small nets: threads cost more than they give, and break determinism
        try:
            gen = torch.Generator().manual_seed(int(self.random_state or 0))
            torch.manual_seed(int(self.random_state or 0))
            trunk = torch.nn.Sequential(torch.nn.Linear(X.shape[1], self.hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU())
            head = torch.nn.Linear(self.hidden, 1)
            if weak_X is not None and len(weak_X) and self.pretrain_epochs:
                self._pretrain(trunk, weak_X, weak_y, gen)
            self._finetune(trunk, head, X, y, gen)
        finally:
            torch.set_num_threads(threads)
        self.model_ = torch.nn.Sequential(trunk, head).eval()
        return self

    def _tensor(self, X):
        import torch

        return torch.as_tensor((np.asarray(X, dtype=np.float64) - self.x_mean_) / self.x_std_, dtype=torch.float32)

    def _pretrain(self, trunk, weak_X, weak_y, gen) -> None:
        import torch

        z = (weak_y - weak_y.mean(axis=0)) / np.where(weak_y.std(axis=0) > 0, weak_y.std(axis=0), 1.0)
        heads = torch.nn.Linear(self.hidden, z.shape[1])
        params = list(trunk.parameters()) + list(heads.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        Xt, Zt = self._tensor(weak_X), torch.as_tensor(z, dtype=torch.float32)
        for _ in range(self.pretrain_epochs):
            for idx in torch.randperm(len(Xt), generator=gen).split(64):
                opt.zero_grad()
                torch.nn.functional.mse_loss(heads(trunk(Xt[idx])), Zt[idx]).backward()
                opt.step()

    def _finetune(self, trunk, head, X, y, gen) -> None:
        import torch

        params = list(trunk.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        Xt = self._tensor(X)
        yt = torch.as_tensor(y, dtype=torch.float64)
        rel = torch.as_tensor(relevance(y, float(np.quantile(y, 0.2)), float(y.max())), dtype=torch.float64)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(Xt), generator=gen).split(self.batch_size):
                if len(idx) < 2:
                    continue
                opt.zero_grad()
                s = head(trunk(Xt[idx])).squeeze(1)
                if self.loss == "lambdarank":
                    s.backward(_lambdas(s, rel[idx], self.sigma))
                else:
                    diff = s[:, None] - s[None, :]
                    target = (yt[idx][:, None] > yt[idx][None, :]).float()
                    mask = (yt[idx][:, None] != yt[idx][None, :])
                    if not mask.any():
                        continue
                    torch.nn.functional.binary_cross_entropy_with_logits(diff[mask], target[mask]).backward()
                opt.step()

    def predict(self, X) -> np.ndarray:
        import torch

        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False)
        with torch.no_grad():
            return self.model_(self._tensor(X)).squeeze(1).double().numpy()


class RankNetMLP(RankMLP):
    """``ranknet``: the same MLP with the pairwise RankNet loss."""

    def __init__(self, loss: str = "ranknet", hidden: int = 64, epochs: int = 150, lr: float = 5e-3,
                 weight_decay: float = 5e-4, batch_size: int = 20, pretrain_epochs: int = 60, sigma: float = 1.0,
                 random_state: int | None = None) -> None:
        super().__init__(loss=loss, hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, pretrain_epochs=pretrain_epochs, sigma=sigma,
                         random_state=random_state)

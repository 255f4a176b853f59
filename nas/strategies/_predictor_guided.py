"""``predictor-guided``: screen large candidate batches with predictors, evaluate the best few.

Each round, on every labelled trial (objectives as minimisation; heavy-tailed ones by quantile):

- the **baseline** forest (default ``ridge-rf``) predicts every objective and constrained metric of
  the candidate pool (the table for a tabular space, else ``candidates`` random samples), with
  a spread over its trees; candidates predicted to break a constraint are dropped;
- the **predictor** (default ``lambdarank``, a learned ranker; one per objective) ranks the
  pool, if it has earned trust: a k-fold cross-validation on the labels seen so far compares
  its Kendall tau with the baseline's; when it is worse, the job's log says so and the
  baseline ranks instead (and the log says when the ranker catches up);
- AceNAS's active labelling: half the batch is the predicted top (exploit: the trusted
  model's predicted non-dominated layers, spread along the front by hypervolume
  contribution), half is chosen for information (explore: the forest's optimistic bound
  ``mean - (kappa - 1) * spread``). The first ``init`` labels are uniform random.

Features: ``space.encode`` plus, with ``zero_cost`` on, the space's zero-cost proxy columns
(``predictors.weak_labels.features``), and the rankers are pretrained on the space's weak
labels. ``auto`` turns this on for a tabular space whose proxy table is ready (HW-GPT's comes
with its table; NB201's is computed once by ``nas proxies nb201``, then cached), so a job
never stalls on minutes of proxy computation it was not asked for. A metric of the function
(accuracy) is predicted from each architecture's ``space.canonical`` form, a latency on a
device from the network as built (dead edges still run). Every proposal records
the predictor that picked it, the number of labels it was fitted on and the trust check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spaces import Architecture, RandomSuggest, TabularSpace, is_profiled

from ..errors import SpecError
from ..pareto import _hv_min, nondominated_rank
from ..storage.records import TrialRecord
from ._base import Proposal, SearchContext, Strategy, dump_state, load_state

__all__ = ["PredictorGuidedStrategy"]


class PredictorGuidedStrategy(Strategy):
    name = "predictor-guided"
    defaults = {"batch_size": 10, "init": 10, "candidates": 4096, "predictor": "lambdarank", "baseline": "ridge-rf",
                "n_estimators": 100, "explore_fraction": 0.5, "kappa": 2.0, "transform": "auto",
                "compare": "predicted", "zero_cost": "auto", "trust_folds": 3, "latency_sample": 128}

    rules = {"init": ("int", 1, None), "candidates": ("int", 1, None), "n_estimators": ("int", 1, None),
             "explore_fraction": ("float", 0.0, 1.0), "kappa": ("float", 1.0, None),
             "transform": (("auto", "linear", "quantile"),),
             "compare": (("predicted", "measured"),), "zero_cost": (("auto", "on", "off"),),
             "trust_folds": ("int", 2, 10), "latency_sample": ("int", 8, None)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from predictors import _REGISTRY, list_predictors

        # the baseline screens constraints and explores: it needs a spread over an ensemble
        spread = [n for n in list_predictors() if hasattr(_REGISTRY[n], "predict_dist")]
        if self.params["baseline"] not in spread:
            raise SpecError("strategy.baseline", self.params["baseline"], ", ".join(spread),
                            reason="the baseline needs a predictor with predict_dist")
        rankers = [n for n in list_predictors() if n != "zero-cost"]
        if self.params["predictor"] not in rankers:
            raise SpecError("strategy.predictor", self.params["predictor"], ", ".join(rankers))

    # -- lifecycle -----------------------------------------------------------------
    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None:
        self.ctx = ctx
        saved = load_state(state)
        if state and not saved:
            ctx.log("the job's strategy state was saved by an older release (a pickle, never read): the "
                    "ranker continues from the stored trials with a fresh random state")
        self.rng = np.random.default_rng(ctx.seed)
        if "rng" in saved:
            self.rng.bit_generator.state = saved["rng"]
        self.round = saved.get("round", 0)
        space = ctx.space
        self.tabular = isinstance(space, TabularSpace)
        if self.tabular:
            self.pool = space.enumerate()
            self.pool_X = space.encoded_table()
            # "not measured" is known for a table: never propose what cannot be evaluated
            self.available = np.ones(len(self.pool), dtype=bool)
            for key in ctx.problem.keys:
                if not is_profiled(key):  # profiled latency is measured by the job, not in the table
                    self.available &= np.isfinite(space.metric_array(key))
            self.seen_mask = np.zeros(len(self.pool), dtype=bool)
        self.seen: set[str] = set()
        self.labelled: list[TrialRecord] = []
        self.trusted: list[bool] | None = saved.get("trusted")
        self.check: dict[str, Any] | None = saved.get("check")
        # decided once per job and saved: a proxy table that appears mid-job (``nas proxies``)
        # must not change the features of a resumed job
        self.zero_cost = saved["zero_cost"] if "zero_cost" in saved else self._zero_cost_on()
        if self.tabular:
            # two views of the pool: the networks as built (what a latency is measured on) and
            # their canonical forms (what an accuracy depends on); see _of_function
            self.canon = space.canonical_indices()
            self.pool_F, self.pool_Q, self.weak = self.pool_X, self.pool_X[self.canon], None
            if self.zero_cost:
                from predictors.weak_labels import features, weak_labels

                self.pool_F, self.pool_Q = features(space, canonical=False), features(space)
                self.weak = weak_labels(space).values
                self.weak_Q = self.weak[self.canon]  # = weak_labels(space, canonical=True)
        views_differ = self.tabular and not np.array_equal(self.pool_F, self.pool_Q)
        keys = [o.key for o in ctx.problem.objectives] + [c.key for c in ctx.problem.constraints]
        function_keys = [self._of_function(k) for k in keys]
        # per objective, then constraint: predicted from canonical forms (else as built; all
        # as built when every architecture is its own canonical form, e.g. hwgpt-s)
        self.on_canonical = np.array(function_keys, dtype=bool) & views_differ
        # copies of one network (cells that differ only in dead edges) are screened as one
        # candidate when any metric is of the function (see _candidates)
        self.dedupe = bool(self.on_canonical.any())
        self.all_function = all(function_keys)
        if self.tabular:
            self.seen_form = np.zeros(len(self.pool), dtype=bool)
        for t in history:
            self._remember(t)
        # profiled latency keys are screened by their Target's latency model (see _latency_screen)
        profiled = [k for k in ctx.problem.keys if is_profiled(k)]
        self.screens: dict[str, Any] = {}
        if profiled:
            from ._latency_screen import LatencyScreen

            # its own generator: the sample is the same on resume whatever self.rng has done
            srng = np.random.default_rng(ctx.seed + 7919)
            k = int(self.params["latency_sample"])
            if self.tabular:
                sample = [self.pool[i] for i in srng.choice(len(self.pool), size=min(k, len(self.pool)), replace=False)]
            else:
                suggest = RandomSuggest(srng)
                sample = list({a.arch_id: a for a in (space.sample(suggest) for _ in range(k))}.values())
            self.screens = {key: LatencyScreen(space, key, sample, ctx.seed, ctx.log) for key in profiled}

    def _zero_cost_on(self) -> bool:
        mode = self.params["zero_cost"]
        if mode == "off" or not self.tabular:
            if mode == "on" and not self.tabular:
                self.ctx.log(f"zero_cost: on is for tabular spaces; {self.ctx.space.name} screens fresh samples "
                             "every round, so its features stay space.encode")
            return False
        from predictors.weak_labels import _table_path

        space = self.ctx.space
        ready = space.name == "hwgpt-s" or _table_path(space)[0].exists()
        if mode == "auto" and not ready:
            self.ctx.log(f"zero-cost features off: no proxy table for {space.name} yet; "
                         f"`nas proxies {space.name}` computes it once (then cached) and turns them on")
            return False
        if not ready:
            self.ctx.log(f"computing zero-cost proxies for every {space.name} architecture (one-time, cached)")
        return True

    def _remember(self, t: TrialRecord) -> None:
        self.seen.add(t.arch_id)
        if self.tabular:
            i = self.ctx.space.index_of(Architecture.from_dict(t.arch))
            self.seen_mask[i] = True
            self.seen_form[self.canon[i]] = True
        if t.state == "complete":
            self.labelled.append(t)

    def get_state(self) -> bytes:
        return dump_state({"rng": self.rng.bit_generator.state, "round": self.round, "trusted": self.trusted,
                             "check": self.check, "zero_cost": self.zero_cost})

    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]:
        for t in trials:
            self._remember(t)
        self.round += 1
        return [None] * len(trials)

    # -- proposals -----------------------------------------------------------------
    def _candidates(self) -> tuple[list[Architecture], np.ndarray, np.ndarray]:
        """Unseen candidates and their features: as built, and of their canonical forms."""
        if self.tabular:
            idx = np.flatnonzero(self.available & ~self.seen_mask)
            if self.dedupe:
                idx = self._one_per_function(idx)
            return [self.pool[i] for i in idx], self.pool_F[idx], self.pool_Q[idx]
        suggest = RandomSuggest(self.rng)
        archs: dict[str, Architecture] = {}
        for _ in range(self.params["candidates"]):
            a = self.ctx.space.sample(suggest)
            if a.arch_id not in self.seen:
                archs.setdefault(a.arch_id, a)
        cands = list(archs.values())
        X = self.ctx.space.encode(cands)
        return cands, X, X

    def _one_per_function(self, idx: np.ndarray) -> np.ndarray:
        """One cell per function among ``idx``: its canonical cell where that can be evaluated,
        else its first copy. Copies share every metric of the function and only add dead
        edges (latency), so a batch of them would spend evaluations on one fact (e.g. the 341
        NB201 cells with no input-output path). A function already measured is dropped when
        every metric is of the function; otherwise only once its canonical cell is measured
        (a copy measured first says nothing of the canonical cell's latency)."""
        form = self.canon[idx]
        idx = idx[~(self.seen_form if self.all_function else self.seen_mask)[form]]
        form = self.canon[idx]
        order = np.lexsort((idx != form, form))  # by function, its canonical cell first
        _, first = np.unique(form[order], return_index=True)
        return np.sort(idx[order][first])

    def _features(self, archs: Sequence[Architecture], canonical: bool = False) -> np.ndarray:
        if self.tabular:
            return (self.pool_Q if canonical else self.pool_F)[[self.ctx.space.index_of(a) for a in archs]]
        return self.ctx.space.encode(archs)

    def _of_function(self, key: str) -> bool:
        """Whether a metric depends only on the function a network computes (an accuracy: read
        from canonical forms) rather than on the network as built (a latency, dead edges
        included: read as built); the space's ``MetricInfo.of_function`` says which."""
        info = self.ctx.space.metrics().get(key.partition("@")[0])
        return bool(info and info.of_function)

    def propose(self, n: int) -> list[Proposal]:
        cands, X, XQ = self._candidates()
        if not cands:
            return []
        n = min(n, len(cands))
        if len(self.labelled) < self.params["init"]:
            pick = self.rng.choice(len(cands), size=n, replace=False)
            return [Proposal(cands[i], {"strategy": self.name, "pick": "random-init", "round": self.round,
                                        "labels": len(self.labelled)}) for i in pick]
        return self._model_based(cands, X, XQ, n)

    def _targets(self) -> tuple[np.ndarray, list]:
        """Training targets and, per column, the map back to the metric's own units.

        Objectives (as minimisation) are scaled to [0, 1] by the labels' range, or, when heavy-
        tailed (see ``_use_quantile``), replaced by their empirical quantile among the labels.
        The quantile transform is monotone, so Pareto dominance is unchanged, but the batch is
        no longer chosen by a long tail (NB201's 1%-accuracy cells) that the forest's spread
        would lure the search into. Constraint metrics stay linear, so predictions can be
        checked against the bounds.
        """
        from scipy.stats import rankdata

        prob = self.ctx.problem
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in prob.directions])
        Y = np.array([prob.vector(t.values) for t in self.labelled]) * sign
        C = np.array([[t.metrics[c.key] for c in prob.constraints] for t in self.labelled]).reshape(len(Y), -1)
        cols, inverse = [], []
        self._forward = []  # metric units -> the column's training scale (for the latency screen)
        n = len(Y)
        for j in range(Y.shape[1]):
            if self._use_quantile(Y[:, j]):
                q = (rankdata(Y[:, j]) - 1.0) / max(n - 1, 1)
                cols.append(q)
                xs, ys = np.sort(q), np.sort(Y[:, j]) * sign[j]
                inverse.append(lambda v, xs=xs, ys=ys, s=sign[j]: np.interp(v, xs, ys * s) * s)
                self._forward.append(lambda v, xs=xs, ys=ys, s=sign[j]: np.interp(v * s, ys * s * s, xs))
            else:
                lo, hi = Y[:, j].min(), Y[:, j].max()
                span = hi - lo if hi > lo else 1.0
                cols.append((Y[:, j] - lo) / span)
                inverse.append(lambda v, lo=lo, span=span, s=sign[j]: (v * span + lo) * s)
                self._forward.append(lambda v, lo=lo, span=span, s=sign[j]: (v * s - lo) / span)
        for j in range(C.shape[1]):
            lo, hi = C[:, j].min(), C[:, j].max()
            span = hi - lo if hi > lo else 1.0
            cols.append((C[:, j] - lo) / span)
            inverse.append(lambda v, lo=lo, span=span: v * span + lo)
        return np.stack(cols, axis=1), inverse

    def _use_quantile(self, y: np.ndarray) -> bool:
        mode = self.params["transform"]
        if mode != "auto":
            return mode == "quantile"
        from scipy.stats import skew

        # heavy tails (NB201 accuracy: skew -3 to -5) need ranks; near-symmetric metrics
        # (latency, HW-GPT perplexity: |skew| < 0.6) keep their linear spacing, which the
        # hypervolume a batch is chosen by is measured in
        return len(y) > 2 and np.ptp(y) > 0 and abs(float(skew(y))) > 1.0

    def _model_based(self, cands: list[Architecture], X: np.ndarray, XQ: np.ndarray, n: int) -> list[Proposal]:
        from predictors import get_predictor

        prob = self.ctx.problem
        m = len(prob.objectives)
        Z, inverse = self._targets()
        archs_lab = [Architecture.from_dict(t.arch) for t in self.labelled]
        X_lab, XQ_lab = self._features(archs_lab), self._features(archs_lab, canonical=True)
        seed = self.ctx.seed * 1009 + self.round
        # one forest per view (see self.on_canonical)
        mean, std, lab_mean = np.empty((len(X), Z.shape[1])), np.empty((len(X), Z.shape[1])), np.empty(Z.shape)
        for canonical in (False, True):
            cols = np.flatnonzero(self.on_canonical == canonical)
            if not len(cols):
                continue
            Xc, Xl = (XQ, XQ_lab) if canonical else (X, X_lab)
            forest = get_predictor(self.params["baseline"], n_estimators=self.params["n_estimators"],
                                   random_state=seed)
            forest.fit(Xl, Z[:, cols] if len(cols) > 1 else Z[:, cols[0]])
            mu, sd = forest.predict_dist(Xc)
            mean[:, cols], std[:, cols] = mu.reshape(len(Xc), -1), sd.reshape(len(Xc), -1)
            lab_mean[:, cols] = forest.predict_dist(Xl)[0].reshape(len(Xl), -1)

        screened = self._screen_latency(X, X_lab)  # key -> (candidates ms, labelled ms)

        # constraints: predicted metric (back in its own units) against the bounds
        ok = np.ones(len(cands), dtype=bool)
        for j, c in enumerate(prob.constraints):
            pred = screened[c.key][0] if c.key in screened else inverse[m + j](mean[:, m + j])
            ok &= c.violations(pred) <= 0
        pool = np.flatnonzero(ok) if ok.any() else np.arange(len(cands))

        # the exploit ranking, per objective: the learned ranker where it has earned trust,
        # else the baseline forest (rankers tend to win on quality, ridge-rf on latency)
        base_name, check = self.params["baseline"], {}
        used = [base_name] * m
        exploit, exploit_lab = mean[:, :m].copy(), lab_mean[:, :m].copy()
        if self.params["predictor"] != base_name:
            # re-checked as the labels grow by half (10, 15, 23, 35, ... labels): a verdict
            # changes slowly, and each check costs k fits of both models per objective
            if self.check is None or len(X_lab) >= 1.5 * self.check["labels"]:
                self.check = self._trust_check(X_lab, XQ_lab, Z[:, :m], seed)
            check = self.check
            for j in range(m):
                if self.trusted and self.trusted[j]:
                    canonical = bool(self.on_canonical[j])
                    Xc, Xl = (XQ, XQ_lab) if canonical else (X, X_lab)
                    r = self._ranker().fit(Xl, -Z[:, j], **self._weak(canonical))
                    exploit[:, j], exploit_lab[:, j] = -r.predict(Xc), -r.predict(Xl)
                    used[j] = self.params["predictor"]
        for j, o in enumerate(prob.objectives):
            if o.key in screened:  # the Target's latency model, on the column's own scale
                exploit[:, j] = self._forward[j](screened[o.key][0])
                exploit_lab[:, j] = self._forward[j](screened[o.key][1])
                used[j] = "kernel-sum"
        ranker = "+".join(dict.fromkeys(used))  # e.g. "lambdarank", "ridge-rf", "lambdarank+ridge-rf"

        feasible_lab = np.array([t.feasible for t in self.labelled])
        n_explore = int(round(n * float(self.params["explore_fraction"])))
        chosen: list[tuple[int, str]] = []
        for mode, k in (("exploit", n - n_explore), ("explore", n_explore)):
            if mode == "exploit":
                pts, lab = exploit, exploit_lab
            else:
                scale = float(self.params["kappa"])
                pts, lab = mean[:, :m] - (scale - 1.0) * std[:, :m], lab_mean[:, :m]
            if self.params["compare"] == "predicted":
                # candidates are compared with what the same model says of the labelled archs:
                # both sides shrink toward the mean alike, so a candidate is not written off
                # only because a measured value is sharper than any prediction can be
                front = lab[feasible_lab] if feasible_lab.any() else np.empty((0, m))
            elif mode == "exploit" and ranker != base_name:
                front = np.empty((0, m))  # ranker scores and measured values share no scale
            else:
                front = Z[feasible_lab, :m] if feasible_lab.any() else np.empty((0, m))
            picks = self._front_layers(pts, pool, front, k, {i for i, _ in chosen})
            chosen += [(i, mode) for i in picks]
        if self.screens and n_explore and chosen:
            # one exploration slot goes to the architecture the latency model knows least
            index = {a.arch_id: i for i, a in enumerate(cands)}
            taken = {cands[i].arch_id for i, _ in chosen}
            for screen in self.screens.values():
                # among the sample's candidates only (one cell per function may leave a copy out)
                outside = {a.arch_id for a in screen.sample if a.arch_id not in index}
                arch = screen.most_uncertain(self.seen | taken | outside)
                if arch is not None and arch.arch_id in index:
                    last = max(k for k, (_, mode) in enumerate(chosen) if mode == "explore") \
                        if any(mode == "explore" for _, mode in chosen) else len(chosen) - 1
                    chosen[last] = (index[arch.arch_id], "latency-adaptive")
                    break
        out = []
        for i, mode in chosen:
            predicted = {o.key: float(screened[o.key][0][i] if o.key in screened else inverse[j](mean[i, j]))
                         for j, o in enumerate(prob.objectives)}
            out.append(Proposal(cands[i], {
                "strategy": self.name, "pick": mode, "round": self.round,
                "predictor": ranker if mode == "exploit" else base_name,
                **({"predictors": dict(zip([o.key for o in prob.objectives], used))} if mode == "exploit" else {}),
                "labels": len(self.labelled), "screened": len(cands), "predicted": predicted,
                "zero_cost": self.zero_cost, **({"trust": check} if check else {})}))
        return out

    def _screen_latency(self, X: np.ndarray, X_lab: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Refit each profiled key's latency model on the job's measurements; predict candidates."""
        out = {}
        archs = [Architecture.from_dict(t.arch) for t in self.labelled]
        for key, screen in self.screens.items():
            y = np.array([t.metrics[key] for t in self.labelled], dtype=np.float64)
            screen.refit(archs, y)
            out[key] = screen.predict(X, self._features(screen.sample), X_lab, y)
        return out

    def _ranker(self):
        from predictors import get_predictor

        # one seed for the whole job: the ranker's pretraining on the weak pool is then done
        # once per process and reused by every fit (predictors._rank._PRETRAINED)
        return get_predictor(self.params["predictor"], random_state=self.ctx.seed)

    def _weak(self, canonical: bool) -> dict[str, Any]:
        import inspect

        takes_weak = "weak_X" in inspect.signature(self._ranker().fit).parameters
        if self.weak is None or not takes_weak:
            return {}
        return {"weak_X": self.pool_Q, "weak_y": self.weak_Q} if canonical else \
            {"weak_X": self.pool_F, "weak_y": self.weak}

    def _trust_check(self, X_built: np.ndarray, X_canon: np.ndarray, Z: np.ndarray, seed: int) -> dict[str, Any]:
        """Cross-validated Kendall tau of the ranker and of the baseline, per objective.

        Sets ``self.trusted`` (per objective: the ranker is used only where it is at least as
        good) and logs each verdict when it changes. Folds with fewer than two distinct labels
        are skipped; an objective with no usable fold is not trusted.
        """
        from predictors import get_predictor
        from predictors.metrics import kendall_tau

        k = int(self.params["trust_folds"])
        folds = np.array_split(np.random.default_rng(seed).permutation(len(X_built)), k)
        name, base_name = self.params["predictor"], self.params["baseline"]
        keys = [o.key for o in self.ctx.problem.objectives]
        check: dict[str, Any] = {"folds": k, "labels": len(X_built)}
        verdicts = []
        for j, key in enumerate(keys):
            canonical = bool(self.on_canonical[j])
            X = X_canon if canonical else X_built
            taus: dict[str, list[float]] = {name: [], base_name: []}
            for f, test in enumerate(folds):
                train = np.setdiff1d(np.arange(len(X)), test)
                y_tr, y_te = -Z[train, j], -Z[test, j]
                if len(test) < 2 or np.ptp(y_tr) == 0 or np.ptp(y_te) == 0:
                    continue
                base = get_predictor(base_name, n_estimators=self.params["n_estimators"],
                                     random_state=seed + f).fit(X[train], y_tr)
                rank = self._ranker().fit(X[train], y_tr, **self._weak(canonical))
                taus[base_name].append(kendall_tau(y_te, base.predict(X[test])))
                taus[name].append(kendall_tau(y_te, rank.predict(X[test])))
            if not taus[name]:
                verdicts.append(False)
                check[key] = {"folds": 0}
                continue
            t_pred, t_base = float(np.mean(taus[name])), float(np.mean(taus[base_name]))
            verdicts.append(t_pred >= t_base)
            check[key] = {name: round(t_pred, 4), base_name: round(t_base, 4)}
        old = self.trusted or [None] * len(keys)
        for j, key in enumerate(keys):
            if verdicts[j] == old[j]:
                continue
            c = check[key]
            if "folds" in c:
                msg = f"{name} on {key}: too few distinct labels to cross-validate; {base_name} ranks for now"
            elif verdicts[j]:
                msg = (f"{name} trusted on {key}: cross-validated Kendall tau {c[name]:.3f} >= {base_name} "
                       f"{c[base_name]:.3f} on {len(X_built)} labels; it ranks the exploit half")
            else:
                msg = (f"{name} not trusted on {key}: cross-validated Kendall tau {c[name]:.3f} < {base_name} "
                       f"{c[base_name]:.3f} on {len(X_built)} labels; falling back to {base_name}")
            self.ctx.log(f"round {self.round}: {msg}")
        self.trusted = verdicts
        return check

    @staticmethod
    def _front_layers(pts: np.ndarray, pool: np.ndarray, front: np.ndarray, k: int, taken: set[int]) -> list[int]:
        """Candidates from the predicted non-dominated layers, best layer first.

        Layers are computed over candidates *and* the labelled points, so a candidate that a
        measured architecture already dominates ranks behind it. Within a layer, picks go
        greedily by hypervolume improvement over the measured front plus the picks so far
        (by contribution among the picks alone when nothing improves on the measured front),
        which spreads a batch along the front.
        """
        cand = np.array([i for i in pool if i not in taken], dtype=np.int64)
        if k <= 0 or len(cand) == 0:
            return []
        U = np.vstack([pts[cand], front]) if len(front) else pts[cand]
        lo, hi = U.min(axis=0), U.max(axis=0)
        U = (U - lo) / np.where(hi > lo, hi - lo, 1.0)
        P, F = U[:len(cand)], U[len(cand):]
        ref = np.full(U.shape[1], 1.1)
        rank = nondominated_rank(U, max_rank=k + 1)[:len(cand)]
        hv = lambda A: _hv_min(A, ref) if len(A) else 0.0  # noqa: E731
        picks: list[int] = []
        for r in np.unique(rank):
            layer = list(np.flatnonzero(rank == r))
            while layer and len(picks) < k:
                chosen = P[picks] if picks else np.empty((0, P.shape[1]))
                base_all = np.vstack([F, chosen])
                gains = np.array([hv(np.vstack([base_all, P[j]])) for j in layer]) - hv(base_all)
                if gains.max() <= 1e-12:
                    gains = np.array([hv(np.vstack([chosen, P[j]])) for j in layer]) - hv(chosen)
                picks.append(layer.pop(int(np.argmax(gains))))
            if len(picks) >= k:
                break
        return [int(cand[j]) for j in picks]

"""Predictor ranking quality on NAS-Bench-201 (3 datasets) and HW-GPT-Bench (perplexity).

Train on N random architectures (N = 20, 50, 100, 200), test on all the others, over seeds;
report Kendall tau, Spearman, NDCG@10 and top-10 regret (mean and std) per predictor. All
predictors see the same splits in the same run.

- ``rf``, ``gbdt``: the baselines, on ``space.encode`` alone;
- ``zero-cost``: one proxy, no training (``nwot`` on NB201, ``params`` on HW-GPT);
- ``rf+zc``: the forest on ``features`` (the encoding plus the zero-cost columns, both of
  each architecture's ``space.canonical`` form);
- ``lambdarank``, ``ranknet``: the learned rankers on ``features``, pretrained on the weak
  labels of the whole space (own proxies, and NASLib's where it has them), then fine-tuned.

At the end, the labels' noise floor on NB201: how much two trainings of the same network
differ, how many architectures lie within 0.1 / 0.3 / 0.5 points of the best, and the top-10
regret of ``lambdarank`` and ``rf`` with 1,000 and 5,000 labels (about 5 minutes).

The first run computes the NB201 proxy tables (about 6 minutes per dataset on two cores,
then cached under ``NAS_CACHE_DIR``).

    python benchmarks/predictors.py                # 10 seeds
    python benchmarks/predictors.py --seeds 3      # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("ignore")
# this file is named like the package it measures: keep its own folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from predictors import get_predictor  # noqa: E402
from predictors.metrics import kendall_tau, ndcg_at_k, spearman, top_k_regret  # noqa: E402
from predictors.weak_labels import feature_names, features, weak_labels  # noqa: E402
from spaces import get_space  # noqa: E402

PREDICTORS = ["rf", "gbdt", "zero-cost", "rf+zc", "lambdarank", "ranknet"]
SIZES = [20, 50, 100, 200]
SETTINGS = [("nb201/cifar10", "nb201", {"dataset": "cifar10"}, "accuracy", 1.0),
            ("nb201/cifar100", "nb201", {"dataset": "cifar100"}, "accuracy", 1.0),
            ("nb201/ImageNet16-120", "nb201", {"dataset": "ImageNet16-120"}, "accuracy", 1.0),
            ("hwgpt-s/perplexity", "hwgpt-s", {}, "perplexity", -1.0)]  # sign: higher = better
# the targets at N = 100 (Kendall; top-10 regret in accuracy points)
TARGETS = {"nb201/cifar10": (0.75, 0.1), "nb201/cifar100": (0.75, None), "nb201/ImageNet16-120": (0.75, 0.3)}


def _progress(label):
    def show(done, total):
        print(f"\r{label}: zero-cost proxies {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)
    return show


def _model(p, space, seed, X, F, W):
    """(estimator, training/test features, fit keyword arguments) of one predictor."""
    if p in ("rf", "gbdt"):
        return get_predictor(p, random_state=seed), X, {}
    if p == "rf+zc":
        return get_predictor("rf", random_state=seed), F, {}
    if p == "zero-cost":
        names = feature_names(space)
        proxy = "nwot" if "nwot" in names else "params"
        return get_predictor("zero-cost", proxy=proxy, n_proxies=len(names)), F, {}
    return get_predictor(p, random_state=seed), F, {"weak_X": F, "weak_y": W}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predictors.json"))
    args = ap.parse_args()
    rows, raw = [], {}
    for label, name, cfg, metric, sign in SETTINGS:
        space = get_space(name, **cfg)
        X = space.encoded_table()
        y = sign * space.metric_array(metric)
        F = features(space, progress=_progress(label))
        W = weak_labels(space, canonical=True).values  # the scores of the forms F describes
        scores = {(n, p): [] for n in SIZES for p in PREDICTORS}
        secs = {(n, p): [] for n in SIZES for p in PREDICTORS}
        for seed in range(args.seeds):  # seeds outside: a ranker's pretraining is reused across N
            idx = np.random.default_rng(seed).permutation(len(X))
            for n in SIZES:
                train, test = idx[:n], idx[n:]
                for p in PREDICTORS:
                    model, Z, kw = _model(p, space, seed, X, F, W)
                    t0 = time.perf_counter()
                    model.fit(Z[train], y[train], **kw)
                    pred = np.asarray(model.predict(Z[test])).reshape(len(test), -1)[:, 0]
                    secs[n, p].append(time.perf_counter() - t0)
                    scores[n, p].append([kendall_tau(y[test], pred), spearman(y[test], pred),
                                         ndcg_at_k(y[test], pred, 10), top_k_regret(y[test], pred, 10)])
            print(f"{label}: seed {seed} done", file=sys.stderr, flush=True)
        for n in SIZES:
            for p in PREDICTORS:
                a = np.array(scores[n, p])
                raw[f"{label}|{n}|{p}"] = {"scores": a.tolist(), "seconds": secs[n, p]}
                rows.append((label, n, p, a.mean(axis=0), a.std(axis=0), float(np.median(secs[n, p]))))
                print(f"{label:<22} N={n:<4} {p:<11} tau {a[:, 0].mean():.3f}  ndcg@10 {a[:, 2].mean():.3f}  "
                      f"regret {a[:, 3].mean():.3f}  ({np.median(secs[n, p]):.2f} s)", file=sys.stderr, flush=True)
    print(f"\nRanking quality on the architectures not trained on (mean ± std over {args.seeds} seeds; "
          "regret in the metric's units, perplexity for hwgpt-s)\n")
    print("| setting | N | predictor | Kendall tau | Spearman | NDCG@10 | top-10 regret | fit+predict s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, n, p, mean, std, s in rows:
        cells = [f"{mean[i]:.3f} ± {std[i]:.3f}" for i in range(4)]
        print(f"| {label} | {n} | {p} | " + " | ".join(cells) + f" | {s:.2f} |")
    print("\nTargets at N = 100 (lambdarank, the default; regret in accuracy points)\n")
    print("| setting | Kendall tau | target | top-10 regret | target | rf: tau, regret | met |")
    print("|---|---|---|---|---|---|---|")
    by = {(lab, n, p): (mean, std) for lab, n, p, mean, std, _ in rows}
    for lab, (tau_t, reg_t) in TARGETS.items():
        (m, _), (r, _) = by[lab, 100, "lambdarank"], by[lab, 100, "rf"]
        met = m[0] >= tau_t and (reg_t is None or m[3] <= reg_t) and m[0] >= r[0]
        print(f"| {lab} | {m[0]:.3f} | >= {tau_t} | {m[3]:.3f} | {'<= ' + str(reg_t) if reg_t else '-'} | "
              f"{r[0]:.3f}, {r[3]:.3f} | {'yes' if met else 'no'} |")
    floor = noise_floor(min(args.seeds, 5))
    raw["noise_floor"] = floor
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "raw": raw}))
    return 0


def _duplicate_groups() -> np.ndarray:
    """For each NB201 cell (in the space's order), the id of its class of computationally
    identical cells, as NATS-Bench marks them (``UniqueString``: same network once dead edges
    and equivalent orders are removed)."""
    import csv

    from spaces._data import data_file

    with open(data_file("nb201-accuracy", "nats_bench.csv"), newline="") as f:
        keys = [r["UniqueString"] for r in csv.DictReader(f)]
    return np.unique(keys, return_inverse=True)[1]


def noise_floor(seeds: int) -> dict:
    """How far the labels themselves allow a top-10 regret to go.

    Cells that NATS-Bench marks as the same network were trained separately, so the spread of
    their accuracies is the label noise; it is set against the margin of the true best over
    the runners-up, and against the regret of the default ranker with 10 and 50 times the
    labels of the issue's N = 100.
    """
    groups = _duplicate_groups()
    print("\nThe labels' noise floor (NB201): accuracy spread among cells that are the same network, "
          f"and top-10 regret with more labels (lambdarank, rf; mean over {seeds} seeds)\n")
    print("| setting | same-network pairs: median abs. difference | archs within 0.1 / 0.3 / 0.5 of the best "
          "| lambdarank regret N = 100 / 1,000 / 5,000 | rf regret N = 100 / 1,000 / 5,000 |")
    print("|---|---|---|---|---|")
    out = {}
    for label, name, cfg, metric, _ in SETTINGS[:3]:
        space = get_space(name, **cfg)
        y = space.metric_array(metric)
        F, W, X = features(space), weak_labels(space, canonical=True).values, space.encoded_table()
        # every pair inside a class, among classes of good networks (above the median: the
        # degenerate ones, e.g. no input-output path, sit at chance and say nothing)
        diffs = []
        for g in np.unique(groups):
            acc = y[groups == g]
            if len(acc) > 1 and acc.mean() > np.median(y):
                diffs.extend(np.abs(acc[:, None] - acc[None, :])[np.triu_indices(len(acc), 1)])
        best = y.max()
        near = [int((y >= best - t).sum()) for t in (0.1, 0.3, 0.5)]
        regret: dict[str, list[float]] = {}
        for n in (100, 1000, 5000):
            for p in ("lambdarank", "rf"):
                vals = []
                for seed in range(seeds):
                    idx = np.random.default_rng(seed).permutation(len(y))
                    train, test = idx[:n], idx[n:]
                    model, Z, kw = _model(p, space, seed, X, F, W)
                    pred = model.fit(Z[train], y[train], **kw).predict(Z[test])
                    vals.append(top_k_regret(y[test], pred, 10))
                regret.setdefault(p, []).append(float(np.mean(vals)))
        out[label] = {"pair_abs_diff_median": float(np.median(diffs)), "n_pairs": len(diffs), "near_best": near,
                      "regret": regret}
        print(f"| {label} | {np.median(diffs):.2f} ({len(diffs)} pairs) | {' / '.join(map(str, near))} "
              f"| {' / '.join(f'{v:.2f}' for v in regret['lambdarank'])} "
              f"| {' / '.join(f'{v:.2f}' for v in regret['rf'])} |", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())

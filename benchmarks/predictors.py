"""Predictor ranking quality on NAS-Bench-201 (3 datasets) and HW-GPT-Bench (perplexity).

Train on N random architectures (N = 20, 50, 100, 200), test on all the others, over seeds;
report Kendall tau, Spearman, NDCG@10 and top-10 regret (mean and std) per predictor. All
predictors see the same splits in the same run.

- ``rf``, ``gbdt``: the baselines, on ``space.encode`` alone;
- ``zero-cost``: one proxy, no training (``nwot`` on NB201, ``params`` on HW-GPT);
- ``rf+zc``: the forest on ``features`` (the encoding plus the zero-cost columns);
- ``lambdarank``, ``ranknet``: the learned rankers on ``features``, pretrained on the weak
  labels of the whole space (own proxies, and NASLib's where it has them), then fine-tuned.

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
        W = weak_labels(space).values
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "raw": raw}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

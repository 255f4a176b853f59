"""Predictor ranking quality on NAS-Bench-201 (3 datasets) and HW-GPT-Bench (perplexity).

Train on N random architectures (N = 20, 50, 100, 200), test on all the others, over seeds;
report Kendall tau, Spearman, NDCG@10 and top-10 regret (mean and std) per predictor. All
predictors see the same splits in the same run.

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
from spaces import get_space  # noqa: E402

PREDICTORS = ["rf", "ridge-rf", "gbdt", "lambdarank", "ranknet"]
SIZES = [20, 50, 100, 200]
SETTINGS = [("nb201/cifar10", "nb201", {"dataset": "cifar10"}, "accuracy", 1.0),
            ("nb201/cifar100", "nb201", {"dataset": "cifar100"}, "accuracy", 1.0),
            ("nb201/ImageNet16-120", "nb201", {"dataset": "ImageNet16-120"}, "accuracy", 1.0),
            ("hwgpt-s/perplexity", "hwgpt-s", {}, "perplexity", -1.0)]  # sign: higher = better


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
        for n in SIZES:
            scores = {p: [] for p in PREDICTORS}
            secs = {p: [] for p in PREDICTORS}
            for seed in range(args.seeds):
                idx = np.random.default_rng(seed).permutation(len(X))
                train, test = idx[:n], idx[n:]
                for p in PREDICTORS:
                    t0 = time.perf_counter()
                    model = get_predictor(p, random_state=seed).fit(X[train], y[train])
                    pred = np.asarray(model.predict(X[test])).reshape(len(test), -1)[:, 0]
                    secs[p].append(time.perf_counter() - t0)
                    scores[p].append([kendall_tau(y[test], pred), spearman(y[test], pred),
                                      ndcg_at_k(y[test], pred, 10), top_k_regret(y[test], pred, 10)])
            for p in PREDICTORS:
                a = np.array(scores[p])
                raw[f"{label}|{n}|{p}"] = {"scores": a.tolist(), "seconds": secs[p]}
                rows.append((label, n, p, a.mean(axis=0), a.std(axis=0), float(np.median(secs[p]))))
                print(f"{label:<22} N={n:<4} {p:<11} tau {a[:, 0].mean():.3f}  ndcg@10 {a[:, 2].mean():.3f}  "
                      f"regret {a[:, 3].mean():.3f}  ({np.median(secs[p]):.2f} s)", file=sys.stderr, flush=True)
    print(f"\nRanking quality on the architectures not trained on (mean ± std over {args.seeds} seeds; "
          "regret in the metric's units, perplexity for hwgpt-s)\n")
    print("| setting | N | predictor | Kendall tau | Spearman | NDCG@10 | top-10 regret | fit+predict s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, n, p, mean, std, s in rows:
        cells = [f"{mean[i]:.3f} ± {std[i]:.3f}" for i in range(4)]
        print(f"| {label} | {n} | {p} | " + " | ".join(cells) + f" | {s:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "raw": raw}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

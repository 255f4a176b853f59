"""Search efficiency against externally measured ground truth (NAS-Bench-201, HW-GPT-Bench).

For each setting (space, dataset, quality x latency on one device) and strategy, run the
engine for 200 evaluations per seed and report the hypervolume gap to the table's true Pareto
front after 50, 100 and 200 evaluations: every objective turned into minimisation, normalised
to [0, 1] by its min and max over the whole table, reference point (1, 1);
gap = 1 - HV(found) / HV(all). Median (and IQR) over seeds. Evaluation is inline (a table
lookup); Ray's per-trial overhead is measured by benchmarks/throughput.py.

    python benchmarks/search_efficiency.py            # full: 10 seeds
    python benchmarks/search_efficiency.py --quick    # 3 seeds, fewer settings
    BENCH_STRATEGIES=predictor-guided python benchmarks/search_efficiency.py --settings nb201/cifar100/raspi4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("ignore")
# benchmarks/predictors.py shares the package's name: keep this folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from nas import run_job  # noqa: E402
from nas.engine import prepare_job  # noqa: E402
from nas.pareto import normalized_hypervolume  # noqa: E402
from nas.storage import Store  # noqa: E402

STRATEGIES = os.environ.get("BENCH_STRATEGIES", "predictor-guided,tpe,nsga2,random").split(",")
CHECKPOINTS = [int(x) for x in os.environ.get("BENCH_CHECKPOINTS", "50,100,200").split(",")]
SETTINGS = [
    # (label, space config, quality objective, device)
    ("nb201/cifar10/raspi4", {"name": "nb201", "dataset": "cifar10"}, "accuracy", "raspi4"),
    ("nb201/cifar10/pixel3", {"name": "nb201", "dataset": "cifar10"}, "accuracy", "pixel3"),
    ("nb201/cifar10/titanx_256", {"name": "nb201", "dataset": "cifar10"}, "accuracy", "titanx_256"),
    ("nb201/cifar100/raspi4", {"name": "nb201", "dataset": "cifar100"}, "accuracy", "raspi4"),
    ("nb201/cifar100/eyeriss", {"name": "nb201", "dataset": "cifar100"}, "accuracy", "eyeriss"),
    ("nb201/ImageNet16-120/gold_6226", {"name": "nb201", "dataset": "ImageNet16-120"}, "accuracy", "gold_6226"),
    ("hwgpt-s/a100", {"name": "hwgpt-s"}, "perplexity", "a100"),
    ("hwgpt-s/helix_cpu", {"name": "hwgpt-s"}, "perplexity", "helix_cpu"),
]


def spec_for(space: dict, quality: str, device: str, strategy: str, seed: int, budget: int) -> dict:
    return {"space": space, "objectives": [{"name": quality}, {"name": "latency_ms", "device": device}],
            "strategy": {"name": strategy}, "budget": {"evaluations": budget}, "seed": seed,
            "execution": {"backend": "inline"}}


def gaps(spec: dict, store: Store) -> tuple[dict[int, float], float]:
    job = prepare_job(spec)
    space, problem = job.space, job.problem
    table = np.stack([space.metric_array(o.key) for o in problem.objectives], axis=1)
    table = table[np.all(np.isfinite(table), axis=1)]
    lo, hi = table.min(axis=0), table.max(axis=0)
    dirs = problem.directions
    best = np.where(np.array(dirs) == "maximize", hi, lo)
    worst = np.where(np.array(dirs) == "maximize", lo, hi)
    hv_all = normalized_hypervolume(table, dirs, best, worst)
    t0 = time.perf_counter()
    result = run_job(spec, store)
    seconds = time.perf_counter() - t0
    evaluated = [t for t in result.trials if t.state == "complete" and not (t.source or {}).get("cached")]
    out = {}
    for n in CHECKPOINTS:
        vals = np.array([problem.vector(t.values) for t in evaluated[:n]])
        out[n] = 1.0 - normalized_hypervolume(vals, dirs, best, worst) / hv_all
    return out, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 seeds, 3 settings")
    ap.add_argument("--settings", help="comma-separated labels, e.g. nb201/cifar100/raspi4 (default: all)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "search_efficiency.json"))
    args = ap.parse_args()
    seeds = 3 if args.quick else args.seeds
    settings = SETTINGS[::3] if args.quick else SETTINGS
    if args.settings:
        wanted = args.settings.split(",")
        unknown = sorted(set(wanted) - {s[0] for s in SETTINGS})
        if unknown:
            ap.error(f"--settings: got {', '.join(unknown)}; valid: {', '.join(s[0] for s in SETTINGS)}")
        settings = [s for s in SETTINGS if s[0] in wanted]
    budget = max(CHECKPOINTS)
    tmp = tempfile.TemporaryDirectory()
    store = Store(f"sqlite:///{tmp.name}/bench.db")
    rows, raw = [], {}
    for label, space, quality, device in settings:
        for strategy in STRATEGIES:
            per_seed, secs = [], []
            for seed in range(seeds):
                g, s = gaps(spec_for(space, quality, device, strategy, seed, budget), store)
                per_seed.append(g)
                secs.append(s)
            raw[f"{label}|{strategy}"] = {"gaps": per_seed, "seconds": secs}
            med = {n: float(np.median([g[n] for g in per_seed])) for n in CHECKPOINTS}
            iqr = {n: tuple(np.percentile([g[n] for g in per_seed], [25, 75])) for n in CHECKPOINTS}
            rows.append((label, strategy, med, iqr, float(np.median(secs))))
            print(f"{label:<32} {strategy:<17} " + "  ".join(f"@{n}: {med[n]:.4f}" for n in CHECKPOINTS)
                  + f"  ({np.median(secs):.2f} s/run)", file=sys.stderr, flush=True)

    print(f"\nHypervolume gap to the true Pareto front (median over {seeds} seeds, [IQR]; lower is better)\n")
    print("| setting | strategy | gap @50 | gap @100 | gap @200 | s/run |")
    print("|---|---|---|---|---|---|")
    for label, strategy, med, iqr, s in rows:
        cells = [f"{med[n]:.4f} [{iqr[n][0]:.4f}-{iqr[n][1]:.4f}]" for n in CHECKPOINTS]
        print(f"| {label} | {strategy} | " + " | ".join(cells) + f" | {s:.2f} |")
    # the target: predictor-guided below tpe at 100 everywhere, and at most half on average
    ratios, wins = [], 0
    print("\n| setting | predictor-guided / tpe at 100 |")
    print("|---|---|")
    for label, *_ in settings:
        pg = next(r for r in rows if r[0] == label and r[1] == "predictor-guided")[2][100]
        tpe = next(r for r in rows if r[0] == label and r[1] == "tpe")[2][100]
        ratio = pg / tpe if tpe > 0 else float("inf")
        ratios.append(ratio)
        wins += pg < tpe
        print(f"| {label} | {ratio:.3f} |")
    print(f"\npredictor-guided beats tpe at 100 evaluations in {wins}/{len(settings)} settings; "
          f"mean ratio {np.mean(ratios):.3f} (target: all settings, mean <= 0.5)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": seeds, "raw": raw, "mean_ratio_at_100": float(np.mean(ratios)),
                                          "wins_at_100": int(wins)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

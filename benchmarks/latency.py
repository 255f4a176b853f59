"""Latency models of whole networks on this CPU: compiler-aware kernel-sum against a FLOPs-linear
model and the roofline, on NAS-Bench-201 networks, per backend (eager, ONNX Runtime).

Protocol: profile N random NB201 networks (16 channels, 5 cells, 32 px, batch 1, one thread)
with the project's profiler (warm-up, repeated rounds, spread check, median), in ``--passes``
passes over all networks: a network's latency is the fastest of its passes' medians. The
machine is shared, and a neighbour's load lasts longer than one measurement; passes minutes
apart are independent draws, and interference only ever adds time. Then, for each
of ``--splits`` random splits, fit every model on ``--train`` networks and predict the others.
Reported per backend and model: the share of held-out networks predicted within +-10 % and
+-5 % of the measured median, Spearman, and the median relative error (mean and std over
splits). The noise floor is measured in the same run: pass 2 against pass 1, by the same
+-10 % criterion (what a single measurement is worth on this machine).

The fusion rules of each Target are learned once (timed tiny models), and each distinct
kernel is profiled once; the splits reuse them, as a service does across refits.

    python benchmarks/latency.py                       # 150 networks, 100 train, 10 splits
    python benchmarks/latency.py --networks 60 --train 40 --splits 3 --passes 2    # quicker
    python benchmarks/latency.py --backends eager onnxruntime compile --compile-networks 40
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
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from scipy.stats import spearmanr  # noqa: E402

from latency import Target, get_latency_model  # noqa: E402
from latency.fusion import kernels, learn_rules  # noqa: E402
from latency.kernel_model import as_graphs, device_peaks  # noqa: E402
from latency.profilers import get_profiler, machine_id  # noqa: E402
from spaces import RandomSuggest, get_space  # noqa: E402

MODELS = ["flops-linear", "roofline", "kernel-sum"]


def _bar(label: str, done: int, total: int, t0: float) -> None:
    print(f"\r{label}: {done}/{total} ({time.perf_counter() - t0:.0f} s)", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


def measure(space, archs, target) -> np.ndarray:
    prof = get_profiler(target.backend, kernel_iters=0)
    out, t0 = [], time.perf_counter()
    for i, a in enumerate(archs):
        m = prof.profile(space.materialize(a), target, space.example_inputs(a), subject_id=a.arch_id)
        out.append(m.median_ms if m.ok else np.nan)
        _bar(f"profile {target.name}", i + 1, len(archs), t0)
    return np.array(out)


def run_backend(backend: str, space, archs, graphs, n_train: int, splits: int, passes: int,
                reuse: dict | None = None) -> dict:
    target = Target("cpu", backend, threads=1, name=f"cpu-{backend}")
    t0 = time.perf_counter()
    if reuse is not None and backend in reuse["backends"] and "runs_ms" in reuse["backends"][backend]:
        runs = np.array(reuse["backends"][backend]["runs_ms"])[:, :len(archs)]  # refit without re-measuring
    else:
        runs = np.stack([measure(space, archs, target) for _ in range(passes)])
    t_profile = time.perf_counter() - t0
    y = np.min(runs, axis=0)
    ok = np.isfinite(y)
    rel = np.abs(runs[1] - runs[0]) / runs[0] if passes > 1 else np.zeros(len(y))
    t0 = time.perf_counter()
    rules = learn_rules(graphs[:20], target)
    t_rules = time.perf_counter() - t0
    peaks = device_peaks(target)
    res: dict = {"target": target.to_dict(), "networks": int(ok.sum()), "train": n_train, "splits": splits,
                 "passes": passes, "pass_to_min_median_rel": float(np.median(np.max(runs, axis=0) / y - 1)),
                 "arch_ids": [a.arch_id for a in archs], "runs_ms": runs.tolist(),
                 "profile_s": t_profile, "rules_s": t_rules, "noise_within_10pct": float(np.mean(rel <= 0.1)),
                 "noise_median_rel": float(np.median(rel)),
                 "rules": {"fusible": sorted("->".join(p) for p in rules.fusible), "dead_code": rules.dead_code,
                           "fold_constants": rules.fold_constants, "fold_identity": rules.fold_identity,
                           "cse": rules.cse},
                 "peaks": {"gflops": peaks[0], "gbps": peaks[1], "call_ms": peaks[2], "empty_call_ms": peaks[-1]},
                 "latency_ms": {"min": float(np.nanmin(y)), "median": float(np.nanmedian(y)),
                                "max": float(np.nanmax(y))},
                 "kernels_per_network": float(np.mean([len(kernels(g, rules)) for g in graphs])), "models": {}}
    idx_all = np.flatnonzero(ok)
    scores: dict[str, dict[str, list[float]]] = {m: {"within10": [], "within5": [], "spearman": [], "med_rel": [],
                                                     "fit_s": []} for m in MODELS}
    for s in range(splits):
        rng = np.random.default_rng(s)
        perm = rng.permutation(idx_all)
        tr, te = perm[:n_train], perm[n_train:]
        for name in MODELS:
            kw = {} if name == "flops-linear" else {"target": target, "rules": rules, "peaks": peaks}
            if name == "kernel-sum":
                kw["random_state"] = s
            t0 = time.perf_counter()
            model = get_latency_model(name, **kw).fit([graphs[i] for i in tr], y[tr])
            fit_s = time.perf_counter() - t0
            pred = model.predict([graphs[i] for i in te])
            err = np.abs(pred - y[te]) / y[te]
            sc = scores[name]
            sc["within10"].append(float(np.mean(err <= 0.10)))
            sc["within5"].append(float(np.mean(err <= 0.05)))
            sc["spearman"].append(float(spearmanr(pred, y[te])[0]))
            sc["med_rel"].append(float(np.median(err)))
            sc["fit_s"].append(fit_s)
        print(f"{backend} split {s + 1}/{splits}: " + ", ".join(
            f"{m} {scores[m]['within10'][-1]:.0%}" for m in MODELS), file=sys.stderr, flush=True)
    for name, sc in scores.items():
        res["models"][name] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in sc.items()}
    return res


def table(results: dict) -> str:
    lines = ["| backend | model | within +-10 % | within +-5 % | Spearman | median rel. error | fit (s) |",
             "|---|---|---|---|---|---|---|"]
    for backend, r in results["backends"].items():
        for name in MODELS:
            m = r["models"][name]
            f = lambda k, pct=False: (f"{100 * m[k]['mean']:.1f} % ± {100 * m[k]['std']:.1f}" if pct  # noqa: E731
                                      else f"{m[k]['mean']:.3f} ± {m[k]['std']:.3f}")
            lines.append(f"| {backend} | {name} | {f('within10', True)} | {f('within5', True)} | {f('spearman')} | "
                         f"{f('med_rel', True)} | {m['fit_s']['mean']:.1f} |")
    lines += ["", "| backend | networks (train) | latency min / median / max (ms) | kernels per network | "
              "noise: pass 2 within +-10 % of pass 1 | learned rules |", "|---|---|---|---|---|---|"]
    for backend, r in results["backends"].items():
        lat = r["latency_ms"]
        rules = r["rules"]
        flags = [k for k in ("dead_code", "fold_constants", "fold_identity", "cse") if rules[k]]
        lines.append(f"| {backend} | {r['networks']} ({r['train']}) | {lat['min']:.3f} / {lat['median']:.3f} / "
                     f"{lat['max']:.3f} | {r['kernels_per_network']:.0f} | {100 * r['noise_within_10pct']:.0f} % "
                     f"(median {100 * r['noise_median_rel']:.1f} %) | fused: {', '.join(rules['fusible']) or 'none'}; "
                     f"{', '.join(flags) or 'no graph rewrites'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", type=int, default=150)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--passes", type=int, default=3, help="measurements of every network, minutes apart")
    ap.add_argument("--backends", nargs="+", default=["eager", "onnxruntime"],
                    choices=["eager", "onnxruntime", "compile"])
    ap.add_argument("--compile-networks", type=int, default=40,
                    help="networks for the compile backend (inductor compiles each one: ~30 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", metavar="JSON", help="take the measurements from an earlier run's JSON (same "
                    "--networks and --seed) and refit only")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "latency"))
    args = ap.parse_args()
    if args.train >= args.networks:
        ap.error(f"--train: got {args.train}; valid: fewer than --networks ({args.networks})")
    reuse = json.loads(Path(args.reuse).read_text()) if args.reuse else None
    space = get_space("nb201")
    archs = [space.sample(RandomSuggest(args.seed * 100_000 + i)) for i in range(args.networks)]
    t0 = time.perf_counter()
    graphs = as_graphs(archs, space)
    results = {"space": "nb201 (16 channels, 5 cells, 32x32, batch 1)", "machine": machine_id(),
               "trace_s_per_network": (time.perf_counter() - t0) / len(archs), "backends": {}}
    for backend in args.backends:
        n = args.networks if backend != "compile" else min(args.networks, args.compile_networks)
        n_train = args.train if backend != "compile" else int(n * args.train / args.networks)
        results["backends"][backend] = run_backend(backend, space, archs[:n], graphs[:n], n_train, args.splits,
                                                   args.passes, reuse)
    md = table(results)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(f"`python benchmarks/latency.py {' '.join(sys.argv[1:])}`\n\n{md}\n")


if __name__ == "__main__":
    main()

"""Searched subnets against uniformly scaled ones, per model family, at equal latency.

For each family (``vit-elastic`` on vit-small, ``sr-adaptive`` x2 on sr-small, ``unet-blocks``
on unet-small), in one run on this CPU:

1. the parent (the largest subnet): quality and latency (ONNX Runtime and torch eager, one
   thread, batch 1, the engine's profilers);
2. the uniform baselines: every width scaled by the same factor and every depth by the same
   factor (for the U-Net, depth means BK-SDM's fixed removals), a grid of both; at each
   latency limit (75% and 50% of the parent's ONNX Runtime latency) the best-quality uniform
   network within the limit is the baseline;
3. a search job of the engine (SQLite, inline executor) with the quality and the ONNX Runtime
   latency as objectives and the 50% limit as a constraint;
4. the parent, every uniform network and the search's ten best within each limit re-measured
   side by side (interleaved rounds, medians); at each limit the best uniform and the best
   searched network whose re-measured latency is within it are compared. Networks of about a
   millisecond vary by 20-30% between measurements on this shared machine: picking both
   sides from the same side-by-side rounds keeps the comparison fair.

Quality: top-1 on the 599 held-out digits (ties broken by the cross-entropy, which the ViT
search optimises), PSNR on the five held-out photos, the U-Net's output error against the
parent (lower is better). Parent training (once, cached) is reported apart from search time.

    python benchmarks/model_spaces.py                  # all three families (~22 min with parents cached)
    python benchmarks/model_spaces.py --family sr --evaluations 60
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import spaces  # noqa: E402
from nas import run_job  # noqa: E402
from nas.storage import Store  # noqa: E402
from spaces import Architecture  # noqa: E402

LIMITS = (0.75, 0.5)
WIDTHS = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
DEPTHS = (1.0, 0.75, 0.5, 0.25)


@dataclass
class Family:
    key: str
    space: str
    config: dict
    quality: str
    direction: str
    search_quality: str  # the objective the search optimises (a finer-grained quality)
    strategy: str
    extra: tuple = ()  # metrics reported beside
    rows: list = field(default_factory=list)


FAMILIES = {
    "vit": Family("vit", "vit-elastic", {"parent": "vit-small", "image_size": 32}, "loss", "minimize", "loss", "nsga2",
                  ("top1",)),
    "sr": Family("sr", "sr-adaptive", {"parent": "sr-small", "scale": 2}, "psnr", "maximize", "psnr", "knapsack",
                 ("ssim", "psnr_bicubic")),
    "unet": Family("unet", "unet-blocks", {"parent": "unet-small", "image_size": 32}, "output_mse", "minimize", "output_mse",
                   "knapsack", ("denoise_loss",)),
}


def _at_least(values, x):
    """The smallest choice >= x (the largest if none is)."""
    return min((v for v in values if v >= x - 1e-9), default=max(values))


def uniform_archs(space) -> dict[str, Architecture]:
    """Uniformly scaled subnets, by label ``w{width factor} d{depth factor}``."""
    choices = {c.name: c.values for c in space.choices()}
    big = space.largest().params_dict()
    out = {}
    for wf in WIDTHS:
        for depth in _depth_variants(space):
            params = dict(big)
            for name, values in choices.items():
                if name.endswith("width") and name in big and not name.startswith("b"):
                    params[name] = _at_least(values, wf * max(values))
            params = depth[1](params, wf, choices)
            try:
                arch = space.from_params(params)
            except spaces.InvalidArchitectureError:
                continue
            out.setdefault(f"w{wf:g} {depth[0]}", arch)
    return out


def _depth_variants(space):
    """(label, params -> params) for each uniform depth; SR block widths scale with the width."""
    if space.name == "unet-blocks":
        def bk(name):
            def apply(params, wf, choices):
                if name == "full":
                    return params
                removed = space.baseline(name).params_dict()
                return {k: (removed[k] if not k.endswith("width") else v) for k, v in params.items()}
            return apply
        return [(n, bk(n)) for n in ("full", "bk-base", "bk-small")]
    out = []
    for df in DEPTHS:
        def apply(params, wf, choices, df=df):
            params = dict(params)
            if space.name == "sr-adaptive":
                blocks = [k for k in choices if k.startswith("b")]
                keep = math.ceil(df * len(blocks))
                for i, k in enumerate(blocks):
                    params[k] = _at_least(choices[k][1:], wf * max(choices[k])) if i < keep else 0
            else:
                for k, values in choices.items():
                    if k.endswith(".depth"):
                        params[k] = _at_least(values, df * max(values))
            return params
        out.append((f"d{df:g}", apply))
    return out


def profile(space, arch, device):
    from latency import get_target
    from latency.profilers import get_profiler

    target = get_target(device)
    m = get_profiler(target.backend).profile(space.materialize(arch), target, space.example_inputs(arch),
                                             subject_id=arch.arch_id)
    if not m.ok:
        raise RuntimeError(f"{arch.arch_id} on {device}: {m.error}")
    return m.median_ms


def better(fam: Family, a: float, b: float) -> bool:
    return a > b if fam.direction == "maximize" else a < b


def score(fam: Family, metrics: dict) -> tuple:
    """Sort key, best first: quality, then (ViT) the finer-grained loss."""
    q = metrics[fam.quality] if fam.direction == "maximize" else -metrics[fam.quality]
    return (q, -metrics.get("loss", 0.0))


def run_family(fam: Family, evaluations: int, rounds: int, log) -> dict:
    space = spaces.get_space(fam.space, **fam.config)
    t0 = time.perf_counter()
    parent = space.parent(progress=None)
    parent_s = time.perf_counter() - t0
    keys = [fam.quality, *fam.extra, "params", "mmacs"]
    largest = space.largest()
    base_ort = statistics.median(profile(space, largest, "cpu-ort") for _ in range(3))
    log(f"[{fam.key}] parent {parent.name} ready ({parent_s:.0f} s), ORT {base_ort:.3f} ms")

    # uniform baselines: quality and ORT latency of the whole grid
    uniform = {}
    for label, arch in uniform_archs(space).items():
        uniform[label] = (arch, space.evaluate(arch, keys), profile(space, arch, "cpu-ort"))
    log(f"[{fam.key}] {len(uniform)} uniform networks measured")

    # the search: one job with the tightest limit as a constraint
    limit_ms = min(LIMITS) * base_ort
    spec = {"space": {"name": fam.space, **fam.config},
            "objectives": [{"name": fam.search_quality, "direction": fam.direction},
                           {"name": "latency_ms", "device": "cpu-ort", "direction": "minimize"}],
            "constraints": [{"name": "latency_ms", "device": "cpu-ort", "max": round(limit_ms, 4)}],
            "strategy": {"name": fam.strategy}, "budget": {"evaluations": evaluations}, "seed": 0,
            "execution": {"backend": "inline"}}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/nas.db")
        t0 = time.perf_counter()
        result = run_job(spec, store)
        search_s = time.perf_counter() - t0
        trials = [t for t in store.load_trials(result.job_id) if t.state == "complete" and t.values]
    log(f"[{fam.key}] search: {len(trials)} trials in {search_s:.0f} s")

    # candidates: the parent, every uniform network, and the search's ten best within each
    # limit (by the search's own latency); all re-measured side by side, then picked per limit
    cands: dict[str, Architecture] = {"parent": largest}
    cands.update({f"uniform ({label})": a for label, (a, _, _) in uniform.items()})
    sign = -1.0 if fam.direction == "maximize" else 1.0
    for lim in LIMITS:
        feasible = sorted((t for t in trials if t.values["latency_ms@cpu-ort"] <= lim * base_ort),
                          key=lambda t: sign * t.values[fam.search_quality])
        for t in feasible[:10]:
            cands.setdefault(f"searched ({t.number})", Architecture.from_dict(t.arch))
    metrics = {name: space.evaluate(a, keys) for name, a in cands.items()}
    lat = {name: {"cpu-ort": [], "cpu-eager": []} for name in cands}
    for _ in range(rounds):
        for name, arch in cands.items():
            for dev in ("cpu-ort", "cpu-eager"):
                lat[name][dev].append(profile(space, arch, dev))
    med = {name: {dev: statistics.median(v) for dev, v in d.items()} for name, d in lat.items()}
    parent_ort = med["parent"]["cpu-ort"]

    def row(label: str, name: str) -> dict:
        ort = lat[name]["cpu-ort"]
        return {"family": fam.space, "network": label, "ort_ms": med[name]["cpu-ort"],
                "ort_ratio": med[name]["cpu-ort"] / parent_ort,
                "ort_spread": (max(ort) - min(ort)) / med[name]["cpu-ort"], "eager_ms": med[name]["cpu-eager"],
                **metrics[name]}

    rows = [row("parent", "parent")]
    for lim in LIMITS:
        for kind in ("uniform", "searched"):
            ok = [n for n in cands if n.startswith(kind) and med[n]["cpu-ort"] <= lim * parent_ort]
            if ok:
                best = max(ok, key=lambda n: score(fam, metrics[n]))
                rows.append(row(f"{kind}@{lim:g} {best.split(' ', 1)[1]}", best))
    return {"rows": rows, "search_s": search_s, "trials": len(trials), "parent_s": parent_s,
            "parent_ort": base_ort, "uniform": len(uniform), "fam": fam}


def verdicts(fam: Family, rows: list[dict]) -> list[str]:
    out = []
    by = {r["network"].split(" ")[0]: r for r in rows}
    for lim in LIMITS:
        u, s = by.get(f"uniform@{lim:g}"), by.get(f"searched@{lim:g}")
        if u is None or s is None:
            out.append(f"{fam.space} @{lim:g}: {'no uniform network' if u is None else 'no searched network'} "
                       "within the limit")
            continue
        q = (f"{s[fam.quality]:.4g} vs {u[fam.quality]:.4g}")
        won = score(fam, s) > score(fam, u)
        out.append(f"{fam.space} @{lim:g}: searched {'beats' if won else 'does NOT beat'} uniform "
                   f"({fam.quality} {q}; ORT {s['ort_ratio']:.2f} vs {u['ort_ratio']:.2f} of the parent)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=list(FAMILIES), action="append", help="default: all")
    ap.add_argument("--evaluations", type=int, default=200, help="search budget per family")
    ap.add_argument("--rounds", type=int, default=3, help="side-by-side latency rounds")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_spaces.md"))
    args = ap.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = [run_family(FAMILIES[k], args.evaluations, args.rounds, log) for k in (args.family or FAMILIES)]

    lines = ["| family | network | quality | ORT ms | / parent | spread | eager ms | params | MMACs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        fam = res["fam"]
        for r in res["rows"]:
            extra = ", ".join(f"{k} {r[k]:.4g}" for k in fam.extra)
            lines.append(f"| {fam.space} | {r['network']} | {fam.quality} {r[fam.quality]:.4g} ({extra}) | "
                         f"{r['ort_ms']:.3f} | {r['ort_ratio']:.2f} | {r['ort_spread']:.0%} | {r['eager_ms']:.3f} | "
                         f"{r['params']:.0f} | {r['mmacs']:.2f} |")
    lines += ["", "| family | strategy | search time | trials | uniform networks | parent training |",
              "|---|---|---|---|---|---|"]
    for res in results:
        fam = res["fam"]
        lines.append(f"| {fam.space} | {fam.strategy} | {res['search_s']:.0f} s | {res['trials']} | {res['uniform']} | "
                     f"{res['parent_s']:.0f} s |")
    lines.append("")
    for res in results:
        lines += [f"- {v}" for v in verdicts(res["fam"], res["rows"])]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"`python benchmarks/model_spaces.py {' '.join(sys.argv[1:])}`\n\n{text}\n")


if __name__ == "__main__":
    main()

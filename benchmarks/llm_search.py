"""LLM subnet search with reformation (search-llm) against pruning baselines, in one run.

On ``llm-small`` (a byte-level LLaMA decoder the project trains on the standard library), at
each kept-parameter ratio (90%, 80%, 60%, 50% by default):

1. a search job of the engine: strategy ``evolution`` (importance initialisation, mask
   mutation, crossover; methods §1.4 scaled down), fitness the perplexity of the masked
   parent on fixed calibration windows (``ppl``, the paper's), a constraint ``kept_ratio`` in
   ``[ratio - 0.02, ratio]``; and the same search with a reformation-aware fitness
   (``ppl_fit_reformed``: each candidate sliced and reformed before it is scored, on 16
   calibration windows instead of 4: ``--aware-windows``);
2. the best architecture of each search, on the held-out test windows, without and with
   reformation;
3. the baselines: every layer at the same ratio with the same importance scores (FLAP /
   LLM-Pruner-like) and with weight-magnitude scores, each without and with reformation;
   and the best (by the same fitness) of 50 random subnets within the ratio window;
4. the dense sliced models of the parent and of each searched subnet: prefill latency of 256
   tokens and decode latency per token (KV cache, 64 tokens after the prefill), batch 1, one
   thread, interleaved rounds, medians; peak memory of each model's own run, measured in a
   fresh process (peak resident set after a reset, minus the resident set before building
   the model).

Targets (issue 5): at every ratio, the searched and reformed subnet's perplexity increase
over dense is at most 0.7 times the uniform-importance baseline's; reformation lowers
perplexity in every setting; the search at 80% takes under 15 minutes on two cores.

    python benchmarks/llm_search.py                          # ~25 min with llm-small cached
    python benchmarks/llm_search.py --ratios 0.8 --evaluations 120
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

import spaces  # noqa: E402
from nas import run_job  # noqa: E402
from nas.storage import Store  # noqa: E402

WINDOW = 0.02


def random_subnets(space, lo: float, hi: float, n: int, seed: int) -> list:
    """``n`` random subnets with a kept ratio in ``[lo, hi]``: per draw a random centre ratio,
    every count drawn around it, importance masks (what random search over counts gives)."""
    rng = random.Random(seed)
    out, seen = [], set()
    p = space.parent_config
    for _ in range(200 * n):
        if len(out) >= n:
            break
        centre = rng.uniform(max(0.05, lo - 0.25), 1.0)
        depth = rng.choice(space._choices["depth"])
        counts = {"depth": depth}
        for i in range(depth):
            for kind, full in (("attn", p.head_dim // 2), ("mlp", p.layers[i].ffn)):
                values = space._choices[f"l{i}.{kind}"]
                want = min(1.0, max(0.0, rng.gauss(centre, 0.15))) * full
                counts[f"l{i}.{kind}"] = min(values, key=lambda v: abs(v - want))
        arch = space.from_params(counts)
        if arch.arch_id not in seen and lo <= space.evaluate(arch, ["kept_ratio"])["kept_ratio"] <= hi:
            seen.add(arch.arch_id)
            out.append(arch)
    return out


def latency(nets: dict[str, torch.nn.Module], rounds: int, log) -> dict[str, dict[str, float]]:
    """Prefill (256 tokens) and per-token decode (64 tokens) medians, interleaved rounds."""
    torch.set_num_threads(1)
    ids = torch.randint(0, 256, (1, 320), generator=torch.Generator().manual_seed(0))
    times: dict[str, dict[str, list[float]]] = {k: {"prefill": [], "decode": []} for k in nets}
    with torch.no_grad():
        for r in range(rounds):
            for name, net in nets.items():
                for _ in range(2 if r == 0 else 1):  # warm-up in the first round
                    cache = [[] for _ in net.model.layers]
                    t0 = time.perf_counter()
                    net.step(ids[:, :256], cache)
                    t1 = time.perf_counter()
                    for i in range(256, 320):
                        net.step(ids[:, i:i + 1], cache)
                    t2 = time.perf_counter()
                times[name]["prefill"].append((t1 - t0) * 1e3)
                times[name]["decode"].append((t2 - t1) * 1e3 / 64)
            log(f"latency round {r + 1}/{rounds}")
    out = {}
    for name, t in times.items():
        out[name] = {k: statistics.median(v) for k, v in t.items()}
        out[name]["prefill_spread"] = (max(t["prefill"]) - min(t["prefill"])) / statistics.median(t["prefill"])
    return out


_PEAK = r"""
import gc, sys, torch
torch.set_num_threads(1)
from spaces.llm.model import Llama, LlamaConfig
import json
cfg = LlamaConfig.from_dict(json.load(open(sys.argv[1])))
state = torch.load(sys.argv[2], weights_only=True)
ids = torch.randint(0, 256, (1, 320))
def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
with torch.no_grad():  # the kernels' and allocator's first-use costs, before the reset
    warm = Llama(LlamaConfig.dense(256, 16, 2, 1, 16)).eval()
    warm.step(ids[:, :256], [[] for _ in warm.model.layers])
del warm
gc.collect()
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS:")
net = Llama(cfg).eval()
net.load_state_dict(state)
del state
with torch.no_grad():
    cache = [[] for _ in net.model.layers]
    net.step(ids[:, :256], cache)
    for i in range(256, 320):
        net.step(ids[:, i:i + 1], cache)
print((status("VmHWM:") - before) / 1024)
"""


def peak_mb(net: torch.nn.Module) -> float:
    with tempfile.TemporaryDirectory() as d:
        Path(d, "cfg.json").write_text(json.dumps(net.config.to_dict()))
        torch.save(net.state_dict(), Path(d, "w.pt"))
        out = subprocess.run([sys.executable, "-c", _PEAK, str(Path(d, "cfg.json")), str(Path(d, "w.pt"))],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])


def search(space, ratio: float, fitness: str, evaluations: int, log, fit_windows: int | None = None) -> tuple:
    lo, hi = round(ratio - WINDOW, 4), ratio
    space_spec = {"name": "llm-subnet", "parent": space.config["parent"]}
    if fit_windows is not None:
        space_spec["fit_windows"] = fit_windows
    spec = {"space": space_spec,
            "objectives": [{"name": fitness, "direction": "minimize"}],
            "constraints": [{"name": "kept_ratio", "min": lo, "max": hi}],
            "strategy": {"name": "evolution"}, "budget": {"evaluations": evaluations}, "seed": 0}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = run_job(spec, store=Store(f"sqlite:///{d}/llm.sqlite"), log=lambda m: None)
        search_s = time.perf_counter() - t0
    feasible = [t for t in res.trials if t.feasible and t.values]
    best = min(feasible, key=lambda t: t.values[fitness])
    log(f"{ratio:.0%}: search on {fitness} {search_s:.0f} s, {len(res.trials)} trials, best {best.values[fitness]:.4f}")
    return spaces.Architecture.from_dict(best.arch), search_s, len(res.trials)


def run_ratio(space, ratio: float, evaluations: int, n_random: int, log, aware_windows: int) -> dict:
    lo, hi = round(ratio - WINDOW, 4), ratio
    searched, search_s, trials = search(space, ratio, "ppl", evaluations, log)
    aware, aware_s, _ = search(space, ratio, "ppl_fit_reformed", evaluations, log, fit_windows=aware_windows)
    rows = {}

    def measure(name, arch, reform=True):
        keys = ["ppl", "ppl_test", "kept_ratio"] + (["ppl_reformed"] if reform else [])
        rows[name] = {**space.evaluate(arch, keys), "arch": arch}

    measure("search", searched)
    measure("search, reformed fitness", aware)
    measure("uniform-importance", space.uniform(ratio, "importance"))
    measure("uniform-magnitude", space.uniform(ratio, "magnitude"))
    randoms = random_subnets(space, lo, hi, n_random, seed=int(ratio * 1000))
    best_random = min(randoms, key=lambda a: space.evaluate(a, ["ppl"])["ppl"])
    measure(f"best of {len(randoms)} random", best_random)
    return {"ratio": ratio, "search_s": search_s, "aware_s": aware_s, "trials": trials, "rows": rows,
            "searched": searched, "aware": aware}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parent", default="llm-small")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.9, 0.8, 0.6, 0.5])
    ap.add_argument("--evaluations", type=int, default=240, help="search budget per ratio")
    ap.add_argument("--random", type=int, default=50, help="random subnets per ratio")
    ap.add_argument("--aware-windows", type=int, default=16,
                    help="calibration windows of the reformation-aware fitness (a sliced and reformed subnet's "
                         "perplexity is a noisier signal than the masked parent's; 4 windows mislead it)")
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "llm_search.md"))
    args = ap.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    space = spaces.get_space("llm-subnet", parent=args.parent)
    t0 = time.perf_counter()
    parent = space.parent(progress=lambda done, total, msg: None)
    log(f"parent {parent.name}: {parent.metrics} (ready in {time.perf_counter() - t0:.0f} s)")
    dense = space.evaluate(space.largest(), ["ppl", "ppl_test"])
    results = [run_ratio(space, r, args.evaluations, args.random, log, args.aware_windows) for r in args.ratios]

    lines = [f"Dense {args.parent}: test perplexity {dense['ppl_test']:.4f} (bytes), fitness windows {dense['ppl']:.4f}.",
             "", "| kept | method | kept ratio | masked ppl, fitness windows | test ppl | test ppl reformed | increase (reformed) |",
             "|---|---|---|---|---|---|---|"]
    verdicts = []
    for res in results:
        for name, r in res["rows"].items():
            ref = r.get("ppl_reformed")
            inc = f"{ref - dense['ppl_test']:+.4f}" if ref is not None else "-"
            lines.append(f"| {res['ratio']:.0%} | {name} | {r['kept_ratio']:.3f} | {r['ppl']:.4f} | {r['ppl_test']:.4f} | "
                         f"{'-' if ref is None else f'{ref:.4f}'} | {inc} |")
        s, a, u = res["rows"]["search"], res["rows"]["search, reformed fitness"], res["rows"]["uniform-importance"]
        d_s, d_a = s["ppl_reformed"] - dense["ppl_test"], a["ppl_reformed"] - dense["ppl_test"]
        d_u, d_ur = u["ppl_test"] - dense["ppl_test"], u["ppl_reformed"] - dense["ppl_test"]
        reform_ok = all(r["ppl_reformed"] < r["ppl_test"] for r in res["rows"].values() if "ppl_reformed" in r)
        verdicts.append(f"{res['ratio']:.0%}: searched+reformed increase {d_s:+.4f} = {d_s / d_u:.2f} x uniform-importance's "
                        f"{d_u:+.4f} ({'meets' if d_s <= 0.7 * d_u else 'misses'} <= 0.7) and {d_s / d_ur:.2f} x "
                        f"uniform-importance reformed ({d_ur:+.4f}; {'meets' if d_s <= 0.7 * d_ur else 'misses'}); "
                        f"with the reformed fitness {d_a:+.4f} = {d_a / d_u:.2f} x and {d_a / d_ur:.2f} x "
                        f"({'meets' if d_a <= 0.7 * d_ur else 'misses'} against the reformed uniform); "
                        f"reformation lowers perplexity in every row: "
                        f"{reform_ok}; search {res['search_s']:.0f} s ({res['trials']} trials), with the reformed "
                        f"fitness {res['aware_s']:.0f} s")

    log("latency and memory of the dense sliced models")
    nets = {"dense": space.materialize(space.largest(), reform=False)}
    for res in results:
        nets[f"search {res['ratio']:.0%}"] = space.materialize(res["searched"])
        nets[f"search {res['ratio']:.0%}, reformed fitness"] = space.materialize(res["aware"])
    lat = latency(nets, args.rounds, log)
    lines += ["", "| model | params | layers | prefill 256 ms | / dense | decode ms/token | / dense | weights MB | "
                  "peak MB (measured) |", "|---|---|---|---|---|---|---|---|---|"]
    base = lat["dense"]
    for name, net in nets.items():
        n = sum(p.numel() for p in net.parameters())
        lines.append(f"| {name} | {n} | {len(net.model.layers)} | {lat[name]['prefill']:.2f} | "
                     f"{lat[name]['prefill'] / base['prefill']:.2f} | {lat[name]['decode']:.3f} | "
                     f"{lat[name]['decode'] / base['decode']:.2f} | {n * 4 / 2**20:.2f} | {peak_mb(net):.1f} |")
    lines += [""] + [f"- {v}" for v in verdicts]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"`python benchmarks/llm_search.py {' '.join(sys.argv[1:])}`\n\n{text}\n")


if __name__ == "__main__":
    main()

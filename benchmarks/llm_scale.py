"""llm-subnet at the sizes users have: import, importance, evaluation, reformation, export
and peak memory of random-weight Hugging Face checkpoints of real shapes.

Per size, in a fresh process (so each peak is its own): ``transformers`` builds a
``LlamaForCausalLM`` with random weights and ``save_pretrained`` writes it in bfloat16 (as
SmolLM and Llama checkpoints ship), then, timed one after the other as a user's job meets them:

* import: ``spaces.import_parent(..., format="hf")``;
* importance: the OBS scores on the calibration windows (16 x 256 tokens, the default);
* evaluation: ``ppl`` of ``--evals`` subnets at about 80 % kept (mutants of the uniform one,
  as the evolution scores them), seconds each (median);
* reformation: slicing and reforming one subnet (the O and down projections, closed form);
* export: ``nas export --format hf`` of a uniform-layers subnet;
* peak RSS of the process (``ru_maxrss``), against the checkpoint's own size and the
  weights in float32.

Sizes: ``25m`` (8 layers, 512 wide, MHA), ``135m`` (SmolLM-135M's shape: 30 layers, 576 wide,
9 heads, 3 key/value heads, vocabulary 49,152) and ``500m`` (24 layers, 1,024 wide, 16 heads,
4 key/value heads, vocabulary 49,152; about 30 minutes here, hence not by default).

Targets (issue 20): a 12-evaluation search of the 135M model in under 3 minutes on two cores;
peak RSS under 3x the weights' size at every size.

    python benchmarks/llm_scale.py                      # 25m and 135m, about 10 minutes
    python benchmarks/llm_scale.py --sizes 25m --evals 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    "25m": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=8, vocab_size=8192),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "500m": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=49152, tie_word_embeddings=True),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one(size: str, evals: int, work: Path) -> dict:
    import torch  # noqa: F401  (in the start figure, as in any job)
    import transformers  # noqa: F401

    import spaces
    from spaces.llm.model import param_count

    os.environ.setdefault("NAS_CACHE_DIR", str(work / "cache"))
    base = _rss_mb()  # the interpreter with torch and transformers loaded: what any job starts from
    folder = work / f"llama-{size}"
    # the checkpoint is written by another process, so that building it is not in this one's peak
    subprocess.run([sys.executable, __file__, "--write", size, str(folder)], check=True)
    n_params = json.loads((folder / "n_params.json").read_text())
    checkpoint_mb = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
    out = {"size": size, "params_m": n_params / 1e6, "checkpoint_mb": checkpoint_mb,
           "fp32_mb": n_params * 4 / 2**20}

    t = time.perf_counter()
    spaces.import_parent("llm-subnet", f"scale-{size}", folder, format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent=f"scale-{size}", tokenizer="bytes", reform=False)
    space.parent()
    out["import_s"] = time.perf_counter() - t
    phases = {"import": _rss_mb()}

    t = time.perf_counter()
    space.scores("importance")
    out["importance_s"] = time.perf_counter() - t
    phases["importance"] = _rss_mb()

    rng = random.Random(0)
    start = space.uniform(0.8)
    archs = [start] + [space.mutate(start, rng) for _ in range(evals - 1)]
    times = []
    for a in archs:
        t = time.perf_counter()
        space.evaluate(a, ["ppl"])
        times.append(time.perf_counter() - t)
    out["eval_s"] = statistics.median(times)
    phases["evaluation"] = _rss_mb()

    t = time.perf_counter()
    space.materialize(start, reform=True)
    out["reform_s"] = time.perf_counter() - t
    phases["reformation"] = _rss_mb()

    uniform = spaces.get_space("llm-subnet", parent=f"scale-{size}", tokenizer="bytes", uniform_layers=True)
    t = time.perf_counter()
    spaces.export_architecture(uniform, uniform.uniform(0.8), work / f"export-{size}", format="hf", force=True)
    out["export_s"] = time.perf_counter() - t
    phases["export"] = _rss_mb()
    out["phase_peak_mb"] = {k: round(v - base) for k, v in phases.items()}  # peak so far, beyond start
    out["search12_s"] = out["import_s"] + out["importance_s"] + 12 * out["eval_s"]
    # and the real thing: `nas search` of a 12-evaluation evolution job in a fresh process (its
    # own importance pass, the job's bookkeeping, the final held-out metrics of its front)
    spec = {"space": {"name": "llm-subnet", "parent": f"scale-{size}", "tokenizer": "bytes"},
            "objectives": [{"name": "ppl"}], "constraints": [{"name": "kept_ratio", "min": 0.7, "max": 0.9}],
            "strategy": {"name": "evolution", "population": 6, "top_k": 2, "mutants": 3, "crossovers": 2},
            "budget": {"evaluations": 12}, "seed": 0, "execution": {"backend": "inline"}}
    (work / "job.json").write_text(json.dumps(spec))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas.cli", "--db", f"sqlite:///{work / 'jobs.sqlite'}", "search",
                    str(work / "job.json"), "--quiet"], check=True, capture_output=True)
    out["job12_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = _rss_mb()
    out["base_rss_mb"] = base
    assert param_count(space.parent_config) == n_params
    return out


def write(size: str, folder: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(max_position_embeddings=2048, rope_theta=10000.0, **SHAPES[size])
    model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    (folder / "n_params.json").write_text(json.dumps(sum(p.numel() for p in model.parameters())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="25m,135m", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--evals", type=int, default=5, help="subnets scored per size (their median time is reported)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--write", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write:
        write(args.write[0], Path(args.write[1]))
        return
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.evals, Path(tmp))))
        return
    rows = []
    for size in args.sizes.split(","):
        if size not in SHAPES:
            sys.exit(f"--sizes: got {size!r}; valid: {', '.join(SHAPES)}")
        p = subprocess.run([sys.executable, __file__, "--one", size, "--evals", str(args.evals)],
                           capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"{size} failed:\n{p.stderr[-3000:]}")
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    head = ("size", "params", "ckpt MB (bf16)", "import s", "importance s", "s / eval", "reform s", "export s",
            "12-eval search s", "`nas search`, 12 evals, s", "peak RSS MB", "of it beyond start", "(peak - start) / ckpt")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['size']} | {r['params_m']:.1f}M | {r['checkpoint_mb']:.0f} | {r['import_s']:.1f} | "
              f"{r['importance_s']:.1f} | {r['eval_s']:.2f} | {r['reform_s']:.1f} | {r['export_s']:.1f} | "
              f"{r['search12_s']:.0f} | {r['job12_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['base_rss_mb']:.0f} | "
              f"{(r['peak_rss_mb'] - r['base_rss_mb']) / r['checkpoint_mb']:.1f} |")
    print(f"\n{args.evals} evaluations per size (median time); 12-eval search = import + importance + 12 x eval "
          "(the evolution's own overhead is small beside them); export includes the uniform-layers space's own "
          "importance and the reformation of the exported subnet; start = the interpreter with torch and "
          "transformers imported; targets: 135m search < 180 s, RSS < 3x the weights")


if __name__ == "__main__":
    main()

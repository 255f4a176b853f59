"""``llm-subnet``: structural subnets of a LLaMA decoder with inherited weights, the space of
"Search for Efficient Large Language Models" (methods §1).

An architecture keeps the first ``depth`` layers and, in each, for every key/value head
the same number of rotary pairs (``lN.attn``; two head-dim channels each: rows of K/V and
of its query heads' Q, and those heads' columns of O, tied: with grouped-query attention a
pruned layer stays a valid GQA layer) and ``lN.mlp`` MLP channels (rows of gate/up,
columns of down). *Which* pairs and channels is the mask (:mod:`spaces.llm.masks`); every
head is kept, as the paper argues they all matter. The uniform baselines live in
:mod:`spaces.llm.baselines`, the evolution operators in :mod:`spaces.llm.evolution`. Counts are the choices (what Optuna, the drivers and the encoder
see); an architecture given by counts alone takes the importance-best masks (methods
§1.2), the ``evolution`` strategy mutates masks too (``mutate``, ``crossover``).

Quality is the byte-level perplexity of the parent run with the masks (no weight copied)
on fixed calibration windows (``ppl``, the search fitness) and on held-out test windows
(``ppl_test``), and after reformation of the O and down projections (``ppl_reformed``,
methods §1.5). ``materialize`` slices the dense, smaller network and reforms it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._architecture import Architecture
from .._base import ConfigOption, MetricInfo, Suggest
from .._elastic import ElasticSpace
from .._errors import InvalidArchitectureError, InvalidConfigError
from .._registry import register_space
from .baselines import UniformBaselines
from .evolution import MaskEvolution
from .masks import masks_json, parse_masks

if TYPE_CHECKING:
    import torch

    from .model import LlamaConfig, Masks

__all__ = ["LLMSubnetSpace"]

_MLP_RATIOS = tuple(round(0.1 + 0.05 * i, 2) for i in range(19))  # the paper's grid: 0.10 .. 1.00 step 0.05
_BASELINE_SCORES = ("importance", "magnitude")
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@register_space
class LLMSubnetSpace(UniformBaselines, MaskEvolution, ElasticSpace):
    name = "llm-subnet"
    version = "1"
    parents = ("llm-small", "llm-tiny")
    importers = {"hf": "spaces.llm.hf:convert"}
    static_metrics = ("params", "kept_ratio", "mmacs", "memory_mb")
    exports_hf = True  # export format "hf": a directory transformers loads (spaces.llm.hf_export)

    @classmethod
    def extra_options(cls) -> dict[str, ConfigOption]:
        return {
            "min_depth": ConfigOption("min_depth", 0, (), "fewest layers a subnet keeps (0: two thirds of the parent's)"),
            "calib_windows": ConfigOption("calib_windows", 16, (), "calibration windows for importance and reformation"),
            "fit_windows": ConfigOption("fit_windows", 4, (), "calibration windows the search fitness (ppl) is measured on"),
            "test_windows": ConfigOption("test_windows", 32, (), "held-out windows for ppl_test and ppl_reformed"),
            "window": ConfigOption("window", 256, (), "tokens per window; also the prefill length of latency_ms and mmacs"),
            "reform": ConfigOption("reform", True, (True, False), "materialize reforms the O and down projections"),
            "tokenizer": ConfigOption("tokenizer", "auto", (), "the parent's tokenizer: auto (the tokenizer files of "
                                      "the folder it was imported from, else bytes), bytes, or a tokenizer.json / folder"),
            "calibration_data": ConfigOption("calibration_data", None, (), "text for importance and reformation: a text, "
                                             ".jsonl or .parquet file or a folder of them (default: the built-in corpus)"),
            "fit_data": ConfigOption("fit_data", None, (), "text the search fitness ppl is measured on (default: "
                                     "calibration_data)"),
            "test_data": ConfigOption("test_data", None, (), "held-out text for ppl_test and ppl_reformed (needed with "
                                      "calibration_data)"),
            "text_field": ConfigOption("text_field", "text", (), "the text field of .jsonl objects and column of .parquet"),
            "memory_context": ConfigOption("memory_context", 0, (), "tokens in the KV cache memory_mb and decode_ms count "
                                           "(0: the window)"),
            "memory_batch": ConfigOption("memory_batch", 1, (), "sequences in the KV cache memory_mb and decode_ms count"),
            "memory_dtype": ConfigOption("memory_dtype", "float16", tuple(_DTYPE_BYTES),
                                         "the dtype of the weights and KV cache memory_mb counts (the deployment's)"),
            "uniform_layers": ConfigOption("uniform_layers", False, (True, False),
                                           "every kept layer with the same widths and every head with the same rotary "
                                           "pairs: subnets a stock Hugging Face config holds (vLLM, llama.cpp)"),
        }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c, p = self.config, self.parent_config
        for key in ("min_depth", "calib_windows", "fit_windows", "test_windows", "window"):
            v = c[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "min_depth" else 1):
                raise InvalidConfigError(f"space.{key}", v, "an integer >= " + ("0" if key == "min_depth" else "1"))
        if not isinstance(c["uniform_layers"], bool):
            raise InvalidConfigError("space.uniform_layers", c["uniform_layers"], "true or false")
        if c["uniform_layers"] and len({la.ffn for la in p.layers}) > 1:
            raise InvalidConfigError("space.uniform_layers", True, "false: the parent's layers have different MLP "
                                     f"widths ({sorted({la.ffn for la in p.layers})})")
        for key in ("memory_context", "memory_batch"):
            v = c[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "memory_context" else 1):
                raise InvalidConfigError(f"space.{key}", v, "an integer >= " + ("0" if key == "memory_context" else "1"))
        if c["memory_dtype"] not in _DTYPE_BYTES:
            raise InvalidConfigError("space.memory_dtype", c["memory_dtype"], ", ".join(_DTYPE_BYTES))
        if c["min_depth"] > len(p.layers):
            raise InvalidConfigError("space.min_depth", c["min_depth"], f"0..{len(p.layers)} (the parent's layers)")
        self.corpus = self._corpus()
        for split, key in (("calibration", "calib_windows"), ("fit", "fit_windows"), ("test", "test_windows")):
            n_tokens = len(self.corpus.tokens(split)[0])
            room = n_tokens // (c["window"] + 1)  # windows that do not overlap
            if room < c[key]:  # the text is too short for the windows asked for
                raise InvalidConfigError(f"space.{key}", c[key], f"at most {room} windows of {c['window'] + 1} "
                                         f"tokens ({self.corpus.describe(split)} has {n_tokens} tokens)")

    def _corpus(self):
        """The job's text and the parent's tokenizer, checked against the parent's vocabulary."""
        from .._parents import import_source
        from .corpus import SPLIT_KEYS, Corpus, load_tokenizer

        c, p = self.config, self.parent_config
        for key in (*SPLIT_KEYS.values(), "tokenizer", "text_field"):
            if c[key] is not None and not isinstance(c[key], str):
                raise InvalidConfigError(f"space.{key}", c[key], "a path (a string)" if key.endswith("_data")
                                         else "a string")
        if c["calibration_data"] is not None and c["test_data"] is None:
            raise InvalidConfigError("space.test_data", None, "a held-out text file or folder (with calibration_data, "
                                     "the built-in corpus is not the same text)")
        tok = c["tokenizer"]
        if tok == "auto":
            source = import_source(c["parent"])
            has = source is not None and any((Path(source) / f).is_file()
                                             for f in ("tokenizer.json", "tokenizer_config.json"))
            if source is not None and not has and p.vocab != 256:
                # an imported model without its tokenizer: scoring it on bytes would be meaningless
                raise InvalidConfigError("space.tokenizer", "auto", f"a tokenizer.json or folder (the parent "
                                         f"{c['parent']!r} was imported from {source}, which has no tokenizer "
                                         "files), or 'bytes' for a byte-level model")
            tok = source if has else "bytes"
        tokenizer = load_tokenizer(tok)
        if tokenizer.vocab_size > p.vocab:
            raise InvalidConfigError("space.tokenizer", c["tokenizer"], f"a tokenizer of at most {p.vocab} tokens (the "
                                     f"parent's vocabulary); {tokenizer.name} has {tokenizer.vocab_size}")
        sources = {"calibration": c["calibration_data"], "fit": c["fit_data"] or c["calibration_data"],
                   "test": c["test_data"]}
        return Corpus(tokenizer, sources, c["text_field"])

    # -- choices -----------------------------------------------------------------------
    @property
    def depth_values(self) -> tuple[int, ...]:
        n = len(self.parent_config.layers)
        lo = self.config["min_depth"] or max(1, math.ceil(2 * n / 3))
        return tuple(range(lo, n + 1))

    def build_choices(self) -> dict[str, tuple[int, ...]]:
        p = self.parent_config
        half = p.head_dim // 2
        out: dict[str, tuple[int, ...]] = {"depth": self.depth_values}
        for n, la in enumerate(p.layers):
            out[f"l{n}.attn"] = tuple(range(max(1, math.ceil(half / 4)), half + 1))
            out[f"l{n}.mlp"] = tuple(sorted({max(1, round(la.ffn * r)) for r in _MLP_RATIOS}))
        return out

    def describe_choice(self, key: str) -> str:
        if key == "depth":
            return "layers kept (the first ones)"
        layer, kind = key.split(".")
        return (f"rotary pairs (2 head channels) every head of layer {layer[1:]} keeps" if kind == "attn"
                else f"MLP channels layer {layer[1:]} keeps")

    def sample(self, suggest: Suggest) -> Architecture:
        """Define-by-run: the depth first, then the counts of the kept layers only; masks are
        the importance-best for the counts."""
        depth = suggest.suggest_categorical("depth", self._choices["depth"])
        counts = {"depth": depth}
        for n in range(1 if self.config["uniform_layers"] else depth):  # uniform: layer 0's counts for all
            for kind in ("attn", "mlp"):
                k = f"l{n}.{kind}"
                counts[k] = suggest.suggest_categorical(k, self._choices[k])
        return self.from_params(counts)

    def from_params(self, params: Mapping[str, Any]) -> Architecture:
        """Counts (``depth``, ``lN.attn``, ``lN.mlp`` for the kept layers; keys of removed
        layers are ignored) and optionally ``masks``; without masks, the importance-best."""
        params = dict(params)
        masks = params.pop("masks", None)
        depth = params.get("depth")
        if isinstance(depth, bool) or depth not in self._choices["depth"]:
            raise InvalidArchitectureError(f"{self.name}: depth is {depth!r}; valid: "
                                           f"{', '.join(map(str, self._choices['depth']))}")
        counts: dict[str, Any] = {"depth": depth}
        for n in range(depth):
            for kind in ("attn", "mlp"):
                k, values = f"l{n}.{kind}", self._choices[f"l{n}.{kind}"]
                if k not in params and n and self.config["uniform_layers"] and f"l0.{kind}" in params:
                    params[k] = params[f"l0.{kind}"]  # uniform layers: layer 0's counts are every layer's
                if k not in params:
                    raise InvalidArchitectureError(f"{self.name}: missing key {k!r}; valid values: {list(values)}")
                if isinstance(params[k], bool) or params[k] not in values:
                    raise InvalidArchitectureError(f"{self.name}: {k} is {params[k]!r}; valid: "
                                                   f"{', '.join(map(str, values))}")
                counts[k] = params[k]
        known = set(self._choices) | {"depth"}
        extra = sorted(k for k in params if k not in known)
        if extra:
            raise InvalidArchitectureError(f"{self.name}: unknown key {extra[0]!r}; keys are depth, lN.attn, lN.mlp "
                                           f"(N < {len(self.parent_config.layers)}) and masks")
        if masks is None:
            m = self._top_masks(counts, "importance")
        else:
            m = parse_masks(self.parent_config, masks, counts)
        return self._arch({**counts, "masks": masks_json(m)})

    def validate(self, arch: Architecture) -> None:
        super().validate(arch)
        if self.config["uniform_layers"] and self.from_params(arch.params) != arch:
            raise InvalidArchitectureError(f"{self.name}: the architecture's layers differ; this space has "
                                           "uniform_layers: every layer keeps layer 0's counts and head 0's pairs")

    def _arch(self, params: Mapping[str, Any]) -> Architecture:
        return super()._arch(self._uniform_params(params) if self.config["uniform_layers"] else params)

    def _uniform_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every kept layer at layer 0's counts, every head of every layer
        keeping layer 0 head 0's rotary pairs, and each layer's MLP mask resized to layer 0's
        count by importance (which channels may differ between layers: only widths are shared)."""
        from .evolution import resize_mask
        from .masks import hex_mask, unhex

        p = dict(params)
        p.update(self._layer_counts({k: v for k, v in p.items() if k != "masks"}))
        if "masks" not in p:
            return p
        p0, masks = self.parent_config, dict(p["masks"])
        shared = masks["l0.attn"][0]
        for n in range(p["depth"]):
            masks[f"l{n}.attn"] = [shared] * p0.n_kv
            kept = unhex(masks[f"l{n}.mlp"], p0.layers[n].ffn, f"l{n}.mlp")
            if len(kept) != p["l0.mlp"]:
                kept = resize_mask(kept, p["l0.mlp"], self.scores("importance").mlp[n])
            masks[f"l{n}.mlp"] = hex_mask(kept)
        p["masks"] = masks
        return p

    def _layer_counts(self, counts: Mapping[str, int]) -> dict[str, int]:
        """The counts an architecture ends up with (uniform layers: layer 0's everywhere)."""
        if not self.config["uniform_layers"]:
            return dict(counts)
        return {k: (counts[f"l0.{k.split('.')[1]}"] if k != "depth" else v) for k, v in counts.items()}

    def masks(self, arch: Architecture) -> Masks:
        self.validate(arch)
        p = arch.params_dict()
        return parse_masks(self.parent_config, p["masks"], p)

    def largest(self) -> Architecture:
        return self.from_params({"depth": self._choices["depth"][-1],
                                 **{k: v[-1] for k, v in self._choices.items() if k != "depth"}})

    def smallest(self) -> Architecture:
        return self.from_params({k: v[0] for k, v in self._choices.items()})

    # -- importance, uniform baselines, evolution operators ----------------------------------
    def scores(self, kind: str = "importance"):
        """The parent's pair and channel scores: OBS ``importance`` on the calibration
        windows, or the weights' ``magnitude`` (L2 norms of the same rows and columns)."""
        if kind not in _BASELINE_SCORES:
            raise InvalidConfigError("scores", kind, ", ".join(_BASELINE_SCORES))
        key = f"scores:{kind}"
        if key not in self._cache.data:
            from .importance import Importance, group_scores, importance

            model = self.parent().module
            if kind == "importance":
                ids = self.calibration_ids()
                self._cache.data[key] = importance(model, ids[:, :-1])
            else:
                cfg = model.config
                attn, mlp = [], []
                for layer in model.model.layers:  # detached: the weights' norms, no graph
                    a, m = layer.self_attn, layer.mlp
                    q = a.q_proj.weight.pow(2).sum(1) + a.o_proj.weight.pow(2).sum(0)
                    kv = a.k_proj.weight.pow(2).sum(1) + a.v_proj.weight.pow(2).sum(1)
                    attn.append(group_scores(q, kv, cfg).detach())
                    mlp.append((m.gate_proj.weight.pow(2).sum(1) + m.up_proj.weight.pow(2).sum(1)
                                + m.down_proj.weight.pow(2).sum(0)).detach())
                self._cache.data[key] = Importance(tuple(attn), tuple(mlp))
            if self.config["uniform_layers"]:
                # one rotary embedding for the whole stock model: a pair scores its sum over every
                # head of every layer, so the importance-best masks are the same everywhere
                s = self._cache.data[key]
                total = sum(a.sum(0) for a in s.attn)
                self._cache.data[key] = Importance(tuple(total.expand_as(a).clone() for a in s.attn), s.mlp)
            elif self.parent_config.qk_norm:
                # Qwen3's q/k norms have one weight per head channel, shared by every head: a dense
                # subnet can only keep the same pairs in all heads, so a pair scores its sum over them
                s = self._cache.data[key]
                self._cache.data[key] = Importance(tuple(a.sum(0, keepdim=True).expand_as(a).clone() for a in s.attn),
                                                   s.mlp)
        return self._cache.data[key]

    def _top_masks(self, counts: Mapping[str, int], kind: str) -> Masks:
        from .importance import top_masks

        d = counts["depth"]
        return top_masks(self.scores(kind), d, [counts[f"l{n}.attn"] for n in range(d)],
                         [counts[f"l{n}.mlp"] for n in range(d)])

    # -- sizes -----------------------------------------------------------------------------
    def metrics(self) -> dict[str, MetricInfo]:
        w = self.config["window"]
        return {
            "ppl": MetricInfo("ppl", "", "minimize", (),
                              f"perplexity (per token of the parent's tokenizer) of the masked parent on {self.config['fit_windows']} fixed "
                              f"windows of {w} tokens (the search fitness)"),
            "ppl_fit_reformed": MetricInfo("ppl_fit_reformed", "", "minimize", (),
                                           "ppl on the same calibration windows after reformation (a reformation-"
                                           "aware fitness: slices and reforms each candidate, about 0.3 s more)"),
            "ppl_test": MetricInfo("ppl_test", "", "minimize", (),
                                   f"perplexity on {self.config['test_windows']} held-out windows, before reformation"),
            "ppl_reformed": MetricInfo("ppl_reformed", "", "minimize", (),
                                       "perplexity on the held-out windows after reformation of O and down"),
            "ppl_test_per_byte": MetricInfo("ppl_test_per_byte", "", "minimize", (),
                                            "ppl_test per byte of the text (compares tokenizers; = ppl_test in bytes)"),
            "ppl_reformed_per_byte": MetricInfo("ppl_reformed_per_byte", "", "minimize", (),
                                                "ppl_reformed per byte of the text"),
            "kept_ratio": MetricInfo("kept_ratio", "", "minimize", (), "parameters kept, over the parent's"),
            **self.size_metrics(),
        }

    def final_metrics(self) -> tuple[str, ...]:
        # the paper reforms the searched subnet once, after the search: the job's result gets its
        # held-out perplexity before and after, without paying a reformation per candidate
        return ("ppl_test", "ppl_reformed", "ppl_test_per_byte", "ppl_reformed_per_byte")

    def size_metrics(self) -> dict[str, MetricInfo]:
        out = super().size_metrics()
        c = self.config
        out["memory_mb"] = MetricInfo("memory_mb", "MiB", "minimize", (),
                                      f"weights plus KV cache of {c['memory_batch']} x {c['memory_context'] or c['window']} "
                                      f"tokens in {c['memory_dtype']}, MiB (analytic, as LLM-Viewer counts)")
        out["latency_ms"] = MetricInfo("latency_ms", "ms", "minimize", out["latency_ms"].devices,
                                       f"prefill of {c['window']} tokens by the dense subnet, profiled on this "
                                       "machine during the job")
        out["decode_ms"] = MetricInfo("decode_ms", "ms", "minimize", out["latency_ms"].devices,
                                      f"one decoding step of {c['memory_batch']} sequence(s) after "
                                      f"{c['memory_context'] or c['window']} tokens in the KV cache, profiled on "
                                      "this machine during the job")
        out["mmacs"] = MetricInfo("mmacs", "M", "minimize", (),
                                  f"multiply-accumulates per token at {self.config['window']} tokens of context, millions")
        return out

    def static_range(self, key: str) -> tuple[float, float]:
        """The smallest and largest value of a size metric over the space, from the counts
        alone (no parent needed: a job's bounds are checked before anything is trained)."""
        lo = self._counts_config({k: v[0] for k, v in self._choices.items()})
        hi = self._counts_config({k: v[-1] for k, v in self._choices.items()})
        return self._size(key, lo), self._size(key, hi)

    def _size(self, key: str, cfg: LlamaConfig) -> float:
        """A metric of ``static_metrics`` of a dense config."""
        if key == "params":
            return float(self.count_params(cfg))
        if key == "memory_mb":
            from .model import memory_bytes

            c = self.config
            return memory_bytes(cfg, c["memory_context"] or c["window"], c["memory_batch"],
                                _DTYPE_BYTES[c["memory_dtype"]]) / 2**20
        return self.count_macs(cfg) / 1e6 if key == "mmacs" else self.kept_ratio(cfg)

    def _counts_config(self, counts: Mapping[str, int]) -> LlamaConfig:
        from .model import LayerConfig

        p = self.parent_config
        layers = tuple(LayerConfig(counts[f"l{n}.mlp"], (tuple(range(counts[f"l{n}.attn"])),) * p.n_kv)
                       for n in range(counts["depth"]))
        return p.with_layers(layers)

    def subnet(self, arch: Architecture) -> LlamaConfig:
        from .model import LayerConfig

        m = self.masks(arch)
        return self.parent_config.with_layers(tuple(LayerConfig(len(ch), pairs) for pairs, ch in zip(m.attn, m.mlp)))

    def count_params(self, subnet: LlamaConfig) -> int:
        from .model import param_count

        return param_count(subnet)

    def count_macs(self, subnet: LlamaConfig) -> int:
        from .model import macs_per_token

        return macs_per_token(subnet, self.config["window"])

    def kept_ratio(self, subnet: LlamaConfig) -> float:
        return self.count_params(subnet) / self.count_params(self.parent_config)

    def evaluate(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        """Sizes from the counts alone (which channels are kept does not change them: no mask
        is decoded, as the evolution's bounds check asks for every candidate); quality from ``measure``."""
        self.validate(arch)
        sizes = self._counts_config(arch.params)
        out = {k: self._size(k, sizes) for k in keys if k in self.static_metrics}
        rest = [k for k in keys if k not in self.static_metrics]
        return {**out, **(self.measure(arch, rest) if rest else {})}

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Per layer the kept attention and MLP fractions (0 for a removed layer), the depth
        fraction and the kept-parameter ratio."""
        p = self.parent_config
        n, half = len(p.layers), p.head_dim // 2
        out = np.zeros((len(archs), 2 * n + 2), dtype=np.float32)
        for r, a in enumerate(archs):
            d = a.params["depth"]
            for i in range(d):
                out[r, 2 * i] = a.params[f"l{i}.attn"] / half
                out[r, 2 * i + 1] = a.params[f"l{i}.mlp"] / p.layers[i].ffn
            out[r, -2] = d / n
            out[r, -1] = self.kept_ratio(self._counts_config(a.params))
        return out

    def graph(self, arch: Architecture):
        import networkx as nx

        cfg = self.subnet(arch)
        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        chain = ["embed"]
        g.add_node("embed", op="embedding", channels=cfg.dim)
        for n, la in enumerate(cfg.layers):
            g.add_node(f"l{n}.attn", op="rmsnorm_mhsa_rope", channels=cfg.dim, heads=cfg.heads, kv_heads=cfg.n_kv, head_dim=la.head_dim)
            g.add_node(f"l{n}.mlp", op="rmsnorm_swiglu", channels=cfg.dim, hidden=la.ffn)
            chain += [f"l{n}.attn", f"l{n}.mlp"]
        g.add_node("lm_head", op="rmsnorm_linear", channels=cfg.vocab)
        nx.add_path(g, chain + ["lm_head"])
        return g

    # -- evaluation ----------------------------------------------------------------------------
    def calibration_ids(self):
        return self.corpus.windows("calibration", self.config["calib_windows"], self.config["window"], seed=1)[0]

    def _windows(self, split: str):
        key = {"fit": "fit_windows", "test": "test_windows"}[split]
        return self.corpus.windows(split, self.config[key], self.config["window"])

    def measure(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        """Perplexities per token of the parent's tokenizer; ``*_per_byte`` ones over the bytes
        of the same text (equal for a byte-level parent), from the same forward pass."""
        from .train import negative_log_likelihood

        out: dict[str, float] = {}
        model = self.parent().module
        masks = self.masks(arch)

        def score(name: str, net, split: str, m=None) -> None:
            ids, nbytes = self._windows(split)
            total, count = negative_log_likelihood(net, ids, m)
            out[name] = math.exp(total / count)
            if f"{name}_per_byte" in keys:
                out[f"{name}_per_byte"] = math.exp(total / float(nbytes.sum()))

        if "ppl" in keys:
            score("ppl", model, "fit", masks)
        if "ppl_test" in keys or "ppl_test_per_byte" in keys:
            score("ppl_test", model, "test", masks)
        if {"ppl_reformed", "ppl_reformed_per_byte", "ppl_fit_reformed"} & set(keys):
            net = self.materialize(arch, reform=True)
            if "ppl_reformed" in keys or "ppl_reformed_per_byte" in keys:
                score("ppl_reformed", net, "test")
            if "ppl_fit_reformed" in keys:
                score("ppl_fit_reformed", net, "fit")
        return {k: v for k, v in out.items() if k in keys}

    # -- the network ----------------------------------------------------------------------------
    @classmethod
    def network_types(cls):
        from .model import Llama, LlamaConfig

        return Llama, LlamaConfig

    def materialize(self, arch: Architecture, parent: Any = None, *, reform: bool | None = None):
        """The dense subnet with its rows and columns sliced from ``parent`` (default: this
        space's), its O and down projections reformed when the space says so (``reform``).
        Without reformation its output equals ``run_subnet``."""
        import torch

        from .model import Llama

        model = self.parent_module(parent, Llama)
        if model.config != self.parent_config:
            raise InvalidArchitectureError(
                f"{self.name}: the parent does not fit {self.config['parent']!r}: it is {model.config.dim} wide with "
                f"{len(model.config.layers)} layers, {self.config['parent']!r} is {self.parent_config.dim} wide with "
                f"{len(self.parent_config.layers)} (a Hugging Face model becomes a parent with spaces.import_parent)")
        masks = self.masks(arch)
        net = model.slice(masks)
        if self.config["reform"] if reform is None else reform:
            from .importance import reform as rectify

            with torch.no_grad():
                for n, (w_o, w_d) in rectify(model, masks, self.calibration_ids()).items():
                    net.model.layers[n].self_attn.o_proj.weight.copy_(w_o)
                    net.model.layers[n].mlp.down_proj.weight.copy_(w_d)
        return net.eval()

    def write_hf(self, module: Any, out: Any) -> dict[str, Any]:
        """Write the dense subnet ``module`` into the directory ``out`` as a Hugging Face
        checkpoint of the parent's family, with the parent's tokenizer files when it was
        imported from a directory that has them; returns ``{"network": ..., "tokenizer_files": [...]}``."""
        from .._parents import import_source
        from .hf_export import hf_directory

        source = import_source(self.config["parent"])
        return hf_directory(module, Path(out), tokenizer_dir=Path(source) if source else None)

    def profiling_subjects(self, arch: Architecture, keys: Sequence[str]):
        """``latency_ms``: a prefill of one window (``window`` tokens); ``decode_ms``: one token
        per sequence after ``memory_context`` tokens (0: the window) of ``memory_batch``
        sequences in the KV cache. The dense subnet without reformation (it changes values, not
        shapes or time), in the parent's dtype (the ``cpu-ort`` profiler times a bf16 network in
        float32, the dtype of ONNX Runtime's CPU kernels)."""
        import torch

        from .model import DecodeStep

        c = self.config
        net = self.materialize(arch, reform=False)
        out = {}
        for key in keys:
            if key.partition("@")[0] == "decode_ms":
                ids = torch.zeros(c["memory_batch"], 1, dtype=torch.long)
                out[key] = (DecodeStep(net, c["memory_context"] or c["window"], c["memory_batch"]), (ids,))
            else:
                out[key] = (net, self.example_inputs(arch))
        return out

    def run_subnet(self, parent: Any, arch: Architecture, ids: torch.Tensor) -> torch.Tensor:
        from .model import Llama

        return self.parent_module(parent, Llama)(ids, self.masks(arch))

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, self.parent_config.vocab, (batch, self.config["window"]), generator=g),)

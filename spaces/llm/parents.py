"""The ``llm-subnet`` parents: ``llm-small`` (the default; 15 to 40 minutes on two cores) and
``llm-tiny`` (for tests; seconds), byte-level LLaMA decoders trained on the standard library."""

from __future__ import annotations

from functools import partial

from .._parents import ParentSpec, register_parent
from .data import VOCAB
from .model import LlamaConfig

__all__ = ["PARENT_CONFIGS", "PARENT_STEPS"]

PARENT_CONFIGS = {
    "llm-small": LlamaConfig.dense(VOCAB, 128, 4, 6, 352),  # 1.27M parameters, head_dim 32
    "llm-tiny": LlamaConfig.dense(VOCAB, 32, 2, 2, 64),
}
PARENT_STEPS = {"llm-small": 1500, "llm-tiny": 40}


def _build(cfg: LlamaConfig):
    from .model import Llama

    return Llama(cfg)


def _train(steps: int, module, seed: int, progress):
    from .train import train_lm

    return train_lm(module, seed, progress, steps=steps)


for _name, _cfg in PARENT_CONFIGS.items():
    register_parent(ParentSpec(
        _name, "llm-subnet",
        f"byte-level LLaMA decoder ({_cfg.dim} wide, {len(_cfg.layers)} layers, {_cfg.heads} heads) trained "
        f"{PARENT_STEPS[_name]} steps on the Python standard library's source",
        partial(_build, _cfg), partial(_train, PARENT_STEPS[_name]), {"config": _cfg}))

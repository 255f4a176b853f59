"""The modeling code an ``llm-subnet`` Hugging Face export carries when its layers differ:
:mod:`configuration_nas_llama` and :mod:`modeling_nas_llama`, copied beside the weights and
named in ``config.json``'s ``auto_map``, so that
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` loads the subnet
without this package. They import torch and transformers only (never ``spaces``); nothing
here imports them (transformers is an optional extra).
"""

from pathlib import Path

__all__ = ["FILES", "AUTO_MAP", "ARCHITECTURE", "MODEL_TYPE", "path"]

FILES = ("configuration_nas_llama.py", "modeling_nas_llama.py")
MODEL_TYPE = "nas_llama"
ARCHITECTURE = "NasLlamaForCausalLM"
AUTO_MAP = {"AutoConfig": "configuration_nas_llama.NasLlamaConfig",
            "AutoModel": "modeling_nas_llama.NasLlamaModel",
            "AutoModelForCausalLM": "modeling_nas_llama.NasLlamaForCausalLM"}


def path(name: str) -> Path:
    """The source file ``name`` (one of :data:`FILES`) as installed with the package."""
    return Path(__file__).with_name(name)

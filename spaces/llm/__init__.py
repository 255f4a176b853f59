"""The ``llm-subnet`` space (search-llm: per-head channel masks, MLP channel masks, layer
removal, reformation) over byte-level LLaMA decoders."""

from .space import LLMSubnetSpace

__all__ = ["LLMSubnetSpace"]

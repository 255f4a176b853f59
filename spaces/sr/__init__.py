"""The ``sr-adaptive`` space (compiler-aware SR NAS: depth gates and per-layer widths)."""

from .space import SRAdaptiveSpace

__all__ = ["SRAdaptiveSpace"]

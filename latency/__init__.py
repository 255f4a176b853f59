"""Latency: targets, measurements, profilers and latency models (filled in by the latency issue).

For now the package holds the value type that names where a latency was measured.
"""

from ._target import Target

__all__ = ["Target"]

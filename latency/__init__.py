"""Latency: targets, measurements, profilers and latency models.

* :class:`Target` names where a latency is measured; :class:`Measurement` keeps every raw timing
  and its provenance.
* ``get_profiler(backend)`` measures a ``torch.nn.Module`` (or an exported ONNX file) on this
  machine: ``eager``, ``compile`` (inductor), ``onnxruntime``.
* ``get_latency_model(name, target=None, **params)`` returns a scikit-learn regressor in
  milliseconds: ``kernel-sum`` (nn-Meter-style, compiler-aware), ``roofline``, ``flops-linear``
  (the baseline) and ``transfer`` (few-shot to a new device from source devices).

Heavy runtimes (onnxruntime, inductor) are imported only when a profiler needs them.
"""

from __future__ import annotations

from ._errors import (BackendNotInstalledError, InvalidMeasurementError, InvalidTargetError, LatencyError,
                      ProfilingError, UnknownBackendError, UnknownLatencyModelError)
from ._measurement import Kernel, Measurement
from ._registry import get_latency_model, list_latency_models, register_latency_model
from ._target import BACKENDS, BUILTIN_TARGETS, Target, get_target

__all__ = ["Target", "Measurement", "Kernel", "BACKENDS", "BUILTIN_TARGETS", "get_target", "get_latency_model",
           "list_latency_models", "register_latency_model", "LatencyError", "InvalidTargetError",
           "UnknownBackendError", "BackendNotInstalledError", "InvalidMeasurementError", "UnknownLatencyModelError",
           "ProfilingError"]

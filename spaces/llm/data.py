"""The text the ``llm-subnet`` parents learn from: the Python standard library's source files
of the running interpreter (``sysconfig.get_paths()["stdlib"]``), real text on every machine.

Files are split by a hash of their path relative to the library, so the split is the same
on every machine with the same Python version: 90% train, 5% calibration (importance
scores, reformation and search fitness), 5% test (perplexity reported by the benchmark).
Tokens are bytes (vocabulary 256): nothing to train or download.
"""

from __future__ import annotations

import hashlib
import sysconfig
from functools import lru_cache
from pathlib import Path

import numpy as np

from .._errors import SpacesError

__all__ = ["VOCAB", "SPLITS", "stdlib_dir", "split_files", "split_tokens", "windows", "CalibrationTooShortError"]

VOCAB = 256
SPLITS = ("train", "calibration", "test")


class CalibrationTooShortError(SpacesError, ValueError):
    """The requested windows do not fit in the text of a split."""


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _split_of(rel: str) -> str:
    h = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 20
    return "test" if h == 0 else "calibration" if h == 1 else "train"


@lru_cache(maxsize=1)
def split_files() -> dict[str, tuple[Path, ...]]:
    """The ``.py`` files of the standard library (no site-packages) by split, sorted."""
    root = stdlib_dir()
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if "site-packages" in rel or "dist-packages" in rel:
            continue
        out[_split_of(rel)].append(f)
    return {k: tuple(v) for k, v in out.items()}


@lru_cache(maxsize=3)
def split_tokens(split: str) -> np.ndarray:
    """The bytes of a split's files, concatenated (each file followed by a NUL separator)."""
    if split not in SPLITS:
        raise SpacesError(f"split: got {split!r}; valid: {', '.join(SPLITS)}")
    parts = []
    for f in split_files()[split]:
        try:
            parts.append(f.read_bytes())
        except OSError:
            continue
        parts.append(b"\0")
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def windows(split: str, n: int, length: int, seed: int = 0):
    """``n`` windows of ``length + 1`` tokens at fixed, evenly spread offsets (``seed`` 0) or
    random offsets (other seeds), as a ``(n, length + 1)`` long tensor: the same windows on
    every call, so every candidate is scored on the same text."""
    import torch

    data = split_tokens(split)
    span = len(data) - length - 1
    if n < 1 or length < 1:
        raise CalibrationTooShortError(f"windows: n and length must be >= 1 (got n={n}, length={length})")
    if span < n:
        raise CalibrationTooShortError(
            f"the {split} split has {len(data)} tokens: too short for {n} windows of {length + 1} tokens; "
            f"ask for fewer or shorter windows")
    if seed == 0:
        starts = np.linspace(0, span, n).astype(np.int64)
    else:
        starts = np.random.default_rng(seed).integers(0, span, n)
    idx = starts[:, None] + np.arange(length + 1)[None]
    return torch.from_numpy(data[idx].astype(np.int64))

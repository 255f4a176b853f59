"""Where the externally measured benchmark tables live (never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import DataNotFoundError

__all__ = ["data_dir", "data_file", "ENV_VAR"]

ENV_VAR = "NAS_BENCHMARK_DATA"
# default: ../shared/data beside the repository root
_DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def data_dir() -> Path:
    """``$NAS_BENCHMARK_DATA`` if set, else ``../shared/data`` beside the repository root
    (or beside the working directory, for a non-editable install run from a checkout)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    if not _DEFAULT.is_dir() and (Path.cwd().parent / "shared" / "data").is_dir():
        return Path.cwd().parent / "shared" / "data"
    return _DEFAULT


def data_file(*parts: str) -> Path:
    """Path of a benchmark file; a missing file names the variable and the file."""
    path = data_dir().joinpath(*parts)
    if not path.is_file():
        source = f"${ENV_VAR}={os.environ[ENV_VAR]}" if ENV_VAR in os.environ else f"the default {data_dir()} (set {ENV_VAR} to change it)"
        raise DataNotFoundError(
            f"benchmark data file {'/'.join(parts)!r} not found at {path}; data directory is {source}")
    return path

"""Reading foreign checkpoints (timm, diffusers) for ``import_parent``: the file formats and
the tensor-by-tensor check that turns a mismatch into an error naming the tensor."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["read_state_dict", "check_state_dict", "read_config_json", "read_pretrained"]


def read_state_dict(source: Any) -> dict[str, torch.Tensor]:
    """A state dict from a mapping of tensors, a module, or a ``.safetensors`` / ``.pt`` /
    ``.pth`` / ``.bin`` file (a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a
    ``module.`` prefix from DataParallel are unwrapped)."""
    import torch

    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict())
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint: {str(path)!r} is not a file")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                source = load_file(str(path))
            else:
                source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {e})") from None
        if isinstance(source, Mapping):
            for wrapper in ("state_dict", "model"):
                if isinstance(source.get(wrapper), Mapping):
                    source = source[wrapper]
                    break
    if not isinstance(source, Mapping) or not source:
        raise CheckpointError(f"checkpoint: expected a state dict (a mapping of tensors) or its file, "
                              f"got {type(source).__name__}")
    out = {}
    for k, v in source.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint: {k!r} is a {type(v).__name__}, not a tensor")
        out[k[len("module."):] if k.startswith("module.") else k] = v.detach().cpu()
    return out


def check_state_dict(net: torch.nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """``sd`` in ``net``'s float dtype after checking it holds exactly ``net``'s tensors with
    their shapes; otherwise a :class:`CheckpointError` naming the first difference."""

    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), first {missing[0]!r} of shape {tuple(own[missing[0]].shape)}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s), first {extra[0]!r}")
        raise CheckpointError(f"{what} does not match the network its shapes describe: {'; '.join(parts)}")
    out = {}
    for k, t in own.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise CheckpointError(f"{what}: {k!r} has shape {tuple(sd[k].shape)}; the network needs {tuple(t.shape)}")
        v = sd[k]
        if v.is_floating_point() and not _finite(v):
            raise CheckpointError(f"{what}: {k!r} holds NaN or infinite values")
        out[k] = v.to(t.dtype)
    return out


def _finite(t: torch.Tensor, chunk: int = 1 << 20) -> bool:
    """No NaN or infinity in ``t``, checked a slice at a time (a whole-tensor check of a large
    embedding would allocate a copy of it, upcast)."""
    import torch

    flat = t.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, len(flat), chunk))


def read_config_json(directory: Path, what: str) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{what}: {str(path)!r} cannot be read ({type(e).__name__}: {e})") from None


def read_pretrained(source: Any, what: str, expected: str, weights: tuple[str, ...]) -> tuple[dict[str, Any], dict]:
    """``(config, state dict)`` of a Hugging Face-style model object (with ``.config``) or of
    the directory its ``save_pretrained`` wrote: ``config.json`` and the first of the
    ``weights`` files present (a ``*.index.json`` names the shards)."""
    import torch

    if isinstance(source, torch.nn.Module) and hasattr(source, "config"):
        cfg = source.config
        return (cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)), read_state_dict(source)
    if not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(f"{what}: expected a {expected} or its save_pretrained directory, got {type(source).__name__}")
    folder = Path(source)
    if not folder.is_dir():
        raise CheckpointError(f"{what}: {str(folder)!r} is not a directory (give the folder save_pretrained wrote, "
                              "with config.json)")
    config = read_config_json(folder, what)
    for name in weights:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return config, read_state_dict(path)
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{what}: {str(path)!r} cannot be read ({type(e).__name__}: {e})") from None
        sd: dict = {}
        for shard in shards:
            sd.update(read_state_dict(folder / shard))
        return config, sd
    raise CheckpointError(f"{what}: {str(folder)!r} has none of {', '.join(weights)}")

"""Parents: the trained reference networks whose weights subnets inherit.

No pretrained weights can be downloaded where the service runs, so each parent is trained
by the project on real data that ships with its dependencies, once per (name, seed), and
cached on disk under ``$NAS_CACHE_DIR/parents`` (default ``~/.cache/nas/parents``). A
parent is identified by its name, its seed and the digest of its checkpoint file: a job
records the digest, and an export refuses a parent whose digest differs from the one the
job's metrics were measured with.

A parent can also be imported from a foreign checkpoint (a timm ViT, a diffusers U-Net):
``import_parent`` converts it with the space's importer and writes the checkpoint (seed 0)
beside a manifest (``imported/NAME.json``: space, network, config, source), which every
process on the machine reads to know the parent; an imported parent is never retrained.

The one registry of parents: ``register_parent``, ``get_parent``, ``list_parents``,
``load_parent``, ``import_parent``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import pickle
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import SpacesError

if TYPE_CHECKING:
    import torch

__all__ = ["ParentSpec", "TrainedParent", "register_parent", "register_family", "get_parent", "list_parents", "load_parent",
           "import_parent", "import_source", "imported_parents", "parents_dir", "weights_digest", "UnknownParentError",
           "ParentNotTrainedError"]

Progress = Callable[[int, int, str], None]  # (done, total, message)


class UnknownParentError(SpacesError, KeyError):
    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown parent {name!r}; valid: {', '.join(valid)}")

    def __str__(self) -> str:
        return self.args[0]


class ParentNotTrainedError(SpacesError, FileNotFoundError):
    """A parent that is not on disk when training on demand was not allowed."""


@dataclass(frozen=True)
class ParentSpec:
    """How to build and train one parent.

    ``build()`` returns the untrained module; ``train(module, seed, progress)`` trains it in
    place, deterministically for the seed, and returns its metrics (JSON scalars).
    """

    name: str
    space: str
    description: str
    build: Callable[[], torch.nn.Module]
    train: Callable[[torch.nn.Module, int, Progress | None], dict[str, float]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainedParent:
    name: str
    seed: int
    path: Path
    digest: str  # of the weights (``weights_digest``)
    metrics: dict[str, float]
    module: torch.nn.Module = field(repr=False, compare=False)


_REGISTRY: dict[str, ParentSpec] = {}
_BUILTIN_MODULES = ("spaces.vit.parents", "spaces.sr.parents", "spaces.unet.parents", "spaces.llm.parents")
_LOADED: dict[tuple[str, int], TrainedParent] = {}  # by (checkpoint path, seed)


def register_parent(spec: ParentSpec) -> ParentSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"parent {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_family(space: str, configs: dict[str, Any], budgets: dict[str, int], *, network: str, trainer: str,
                    subnets: str, budget: str, describe: str) -> None:
    """Register one parent per entry of ``configs`` for ``space``. Names are ``module:attr``
    strings, imported when a parent is built (torch loads lazily): ``network(config)`` builds
    the parent; ``trainer(module, seed, progress, sample=, smallest=, **{budget: n})`` trains
    it on the subnets that ``subnets``' ``random_subnet(config, rng)`` and
    ``smallest_subnet(config)`` give. ``describe`` is formatted with ``budget=n``."""
    for name, cfg in configs.items():
        register_parent(ParentSpec(name, space, describe.format(budget=budgets[name]),
                                   partial(_build_family, network, cfg),
                                   partial(_train_family, trainer, subnets, cfg, {budget: budgets[name]}),
                                   {"config": cfg}))


def _import(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _build_family(network: str, cfg: Any) -> Any:
    return _import(network)(cfg)


def _train_family(trainer: str, subnets: str, cfg: Any, budget: dict[str, int], module: Any, seed: int,
                  progress: Progress | None) -> dict[str, float]:
    sub = importlib.import_module(subnets)
    return _import(trainer)(module, seed, progress, sample=lambda rng: sub.random_subnet(cfg, rng),
                            smallest=sub.smallest_subnet(cfg), **budget)


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def list_parents() -> list[str]:
    _load_builtins()
    return sorted(set(_REGISTRY) | set(imported_parents()))


def get_parent(name: str) -> ParentSpec:
    _load_builtins()
    if name not in _REGISTRY and _manifest_path(name).is_file():
        _register_imported(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownParentError(name, list_parents()) from None


# -- imported parents ---------------------------------------------------------------------
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def _manifest_path(name: str) -> Path:
    return parents_dir() / "imported" / f"{name}.json"


def import_source(name: str) -> str | None:
    """Where an imported parent was imported from (the path given to :func:`import_parent`,
    or the model object's type name); ``None`` for a built-in or unknown parent."""
    path = _manifest_path(name)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("source")
    except (OSError, ValueError):
        return None


def imported_parents(space: str | None = None) -> list[str]:
    """Names of the imported parents on this machine (of ``space`` only, if given)."""
    folder = parents_dir() / "imported"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            if space is None or json.loads(path.read_text())["space"] == space:
                out.append(path.stem)
        except (OSError, ValueError, KeyError):
            continue  # a manifest being written or damaged: not a parent
    return out


def _register_imported(name: str) -> None:
    m = json.loads(_manifest_path(name).read_text())
    cfg = _import(m["config_type"]).from_dict(m["config"])
    _REGISTRY[name] = ParentSpec(name, m["space"], f"imported from {m['format']} ({m['source']})",
                                 partial(_build_family, m["network"], cfg), partial(_not_trainable, name),
                                 {"config": cfg, "imported": m})


def _not_trainable(name: str, module: Any, seed: int, progress: Progress | None) -> dict[str, float]:
    raise ParentNotTrainedError(f"parent {name!r} was imported, not trained: it exists for seed 0 only, from the "
                                f"checkpoint {checkpoint_path(name, 0)}; if that file is gone, import it again with "
                                f"`nas parents import {name} --overwrite ...` (or spaces.import_parent)")


def import_parent(space: str, name: str, source: Any, *, format: str, overwrite: bool = False,
                  **options: Any) -> TrainedParent:
    """Convert ``source`` (a foreign checkpoint: see the space's ``importers``) into a parent
    of ``space`` named ``name``, store it (seed 0) and return it loaded.

    ``format`` names the importer (``"timm"`` for ``vit-elastic``, ``"diffusers"`` for
    ``unet-blocks``); ``options`` go to it. Nothing is written unless the conversion
    succeeds; an existing imported parent of that name is replaced only with ``overwrite``.
    """
    import torch

    from ._errors import InvalidConfigError
    from ._registry import _INSTANCES, space_class

    cls = space_class(space)
    importers = getattr(cls, "importers", {})
    if format not in importers:
        raise InvalidConfigError("format", format, ", ".join(importers) or f"none: {space} imports no checkpoints")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidConfigError("name", name, "lower-case letters, digits, '.', '_' and '-', starting with a "
                                 "letter or digit, at most 64 characters")
    _load_builtins()
    builtin = sorted(n for n, spec in _REGISTRY.items() if "imported" not in spec.extra)
    if name in builtin:
        raise InvalidConfigError("name", name, f"a name other than the built-in parents ({', '.join(builtin)})")
    if _manifest_path(name).exists() and not overwrite:
        raise InvalidConfigError("name", name, "a new name, or overwrite=True (--overwrite) to replace the imported "
                                 "parent of this name")
    convert = _import(importers[format])
    accepted = [n for n, prm in inspect.signature(convert).parameters.items() if prm.kind == prm.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidConfigError(f"option {unknown[0]}", options[unknown[0]],
                                 f"options of the {format} importer: {', '.join(accepted) or '(none)'}")
    config, module = convert(source, **options)
    state = module.state_dict()
    manifest = {"space": space, "format": format, "options": {k: repr(v) for k, v in options.items()},
                "source": str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__,
                "network": f"{type(module).__module__}:{type(module).__qualname__}",
                "config_type": f"{type(config).__module__}:{type(config).__qualname__}",
                "config": config.to_dict(), "digest": weights_digest(state)}
    path = checkpoint_path(name, 0)
    _manifest_path(name).parent.mkdir(parents=True, exist_ok=True)
    # checkpoint first, manifest last, each by rename: a reader never sees a manifest without its weights
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"name": name, "seed": 0, "state_dict": state, "metrics": {}, "torch": str(torch.__version__)}, tmp)
    os.replace(tmp, path)
    tmp = _manifest_path(name).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, _manifest_path(name))
    del module, state  # the parent is read back from what was stored (memory-mapped): one copy at a time
    _REGISTRY.pop(name, None)
    _LOADED.pop((str(path), 0), None)
    _INSTANCES.clear()  # spaces built over the old parent (of this space or, before an overwrite, another)
    return load_parent(name, 0, train=False)


def _build_with(spec: ParentSpec, state: dict) -> Any:
    """``spec``'s network holding ``state``, in the dtype it was stored in (an imported bf16
    checkpoint stays bf16). Built on the meta device and assigned the loaded tensors (no
    random initialisation, no second copy) when every tensor of the network is in the state
    dict; otherwise built and loaded as usual."""
    import torch

    kinds = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(kinds) == 1:
        with torch.device("meta"):
            module = spec.build().to(kinds.pop())
        module.load_state_dict(state, assign=True)
        if not any(t.is_meta for t in (*module.parameters(), *module.buffers())):
            return module
    module = spec.build()  # a buffer outside the state dict stayed on the meta device
    module.load_state_dict(state)
    return module


def parents_dir() -> Path:
    base = os.environ.get("NAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nas")
    return Path(base) / "parents"


def checkpoint_path(name: str, seed: int) -> Path:
    return parents_dir() / f"{name}-seed{seed}.pt"


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors (names, shapes, dtypes, bytes), first 16 hex digits: the
    same weights give the same digest whatever else the checkpoint file holds."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        # the raw bits (bf16 seen as int16: numpy has no bf16), hashed in place: no copy of the weights
        h.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).reshape(-1).numpy().data)
    return h.hexdigest()[:16]


def load_parent(name: str, seed: int = 0, *, train: bool = True, progress: Progress | None = None,
                force: bool = False) -> TrainedParent:
    """The trained parent ``name`` for ``seed``: from this process, from disk, or trained now.

    Training happens under a file lock, so concurrent workers train a parent once; the
    checkpoint is written to a temporary file and renamed, so a killed trainer leaves no
    half-written checkpoint. ``train=False`` raises :class:`ParentNotTrainedError` instead.
    ``force`` retrains even when a checkpoint exists.
    """
    import fcntl

    import torch

    spec = get_parent(name)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpacesError(f"parent seed: got {seed!r}; valid: an integer >= 0")
    path = checkpoint_path(name, seed)
    key = (str(path), seed)
    if key in _LOADED and not force:
        return _LOADED[key]
    if not path.exists() or force:
        if "imported" in spec.extra:
            spec.train(None, seed, None)  # raises: an imported parent cannot be trained
        if not train:
            raise ParentNotTrainedError(
                f"parent {name!r} (seed {seed}) is not trained on this machine ({path} is missing); "
                f"train it with: nas parents train {name} --seed {seed}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if force or not path.exists():  # another process may have trained it meanwhile
                torch.manual_seed(seed)
                module = spec.build()
                t0 = time.perf_counter()
                with torch.enable_grad():  # the caller may be inside no_grad (an evaluation)
                    metrics = dict(spec.train(module, seed, progress))
                metrics["train_s"] = round(time.perf_counter() - t0, 1)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                torch.save({"name": name, "seed": seed, "state_dict": module.state_dict(), "metrics": metrics,
                            "torch": str(torch.__version__)}, tmp)
                os.replace(tmp, path)
    try:
        # memory-mapped (copy on write): the weights are pages of the file, shared by every
        # process of the machine that loads this parent (the Ray workers of a job)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        module = _build_with(spec, ckpt["state_dict"])
        metrics = dict(ckpt["metrics"])
    except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as e:
        # another network's checkpoint (an older version of the space), or not a checkpoint
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        fix = (f"import it again with `nas parents import {name} --overwrite ...`" if "imported" in spec.extra
               else f"retrain it with: nas parents train {name} --seed {seed} --force")
        raise SpacesError(f"checkpoint {path} does not match parent {name!r} ({detail}); {fix}") from None
    module.eval()
    parent = TrainedParent(name, seed, path, weights_digest(ckpt["state_dict"]), metrics, module)
    _LOADED[key] = parent
    return parent

"""Export of found architectures and ``load_architecture``, the way back into user code.

An export is a directory: ``architecture.json`` (the architecture, the space config, the
dense network's config, the parent's provenance, what the service measured) and one
artefact:

* ``safetensors``: ``model.safetensors``; ``load_architecture`` rebuilds the network from
  the JSON and loads the weights (needs this package, not the parent);
* ``torchscript``: ``model.pt``, runs with ``torch.jit.load`` alone;
* ``onnx``: ``model.onnx`` (batch axis dynamic), runs with ONNX Runtime alone;
* ``hf``: a Hugging Face checkpoint directory (``config.json``, ``model.safetensors``,
  ``generation_config.json``, the parent's tokenizer files) that
  ``transformers.AutoModelForCausalLM.from_pretrained`` loads without this package, for
  spaces that declare ``exports_hf`` (``llm-subnet``; a network no stock config holds
  carries its modeling file: ``trust_remote_code=True``); ``load_architecture`` loads it too.

Exports are written to a temporary directory beside the target and renamed into place, so
a failed export leaves nothing behind and a replaced one (``force``) is never half-written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._architecture import Architecture
from ._errors import ExportError, LoadError

if TYPE_CHECKING:
    import torch

    from ._base import SearchSpace

__all__ = ["FORMATS", "MANIFEST", "export_architecture", "load_architecture", "zip_directory"]

FORMATS = {"safetensors": "model.safetensors", "torchscript": "model.pt", "onnx": "model.onnx",
           "hf": "model.safetensors"}
MANIFEST = "architecture.json"
API_ENV_VAR = "NAS_API_URL"
TOKEN_ENV_VAR = "NAS_API_TOKEN"


def export_architecture(space: SearchSpace, arch: Architecture, out: str | os.PathLike, *,
                        format: str = "safetensors", force: bool = False,
                        expected_provenance: Mapping[str, Any] | None = None,
                        metadata: Mapping[str, Any] | None = None, train_parent: bool = True) -> Path:
    """Write ``arch``'s dense network with its inherited weights to the directory ``out``.

    ``expected_provenance`` (a job's) must equal the space's current one: weights from
    another parent than the one the metrics were measured with are refused.
    """
    if format not in FORMATS:
        raise ExportError("format", f"got {format!r}; valid: {', '.join(FORMATS)}")
    out = Path(out).expanduser().resolve()
    if out.exists() and not force:
        raise ExportError("out", f"{out} exists; choose another directory or pass --force to replace it")
    if out.exists() and not (out / MANIFEST).is_file():  # --force replaces an export, nothing else
        raise ExportError("out", f"{out} exists and is not an export (no {MANIFEST}); refusing to replace it")
    if format == "hf" and not space.exports_hf:
        raise ExportError("format", f"hf: {space.name} networks are not Hugging Face models; spaces that export "
                          "them: " + ", ".join(_spaces_exporting_hf()))
    if not space.has_weights():
        raise ExportError("architecture", f"{space.name} networks have no stored weights to export (the space "
                          "has no trained parent); spaces with weights: " + ", ".join(_spaces_with_weights()))
    space.validate(arch)
    if hasattr(space, "parent"):
        space.parent(train=train_parent)  # raises ParentNotTrainedError when not allowed to train
    provenance = space.provenance()
    if expected_provenance and dict(expected_provenance) != provenance:
        raise ExportError("architecture", f"the job measured with {dict(expected_provenance)} but this machine has "
                          f"{provenance}: the weights it was measured with are not here (train that parent with "
                          "`nas parents train`, same name and seed)")
    module = space.materialize(arch).eval()
    inputs = space.example_inputs(arch)
    created = [d for d in reversed(out.parents) if not d.exists()]  # removed again if the export fails
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; an export is an ordinary directory
        artefact = tmp / FORMATS[format]
        network = space.network_config(arch)
        extra: dict[str, Any] = {}
        if format == "hf":  # the written model's own config: what load_architecture rebuilds
            extra = space.write_hf(module, tmp)
            network = extra.pop("network")
        else:
            _WRITERS[format](module, inputs, artefact)
        manifest = {
            "format": format, "file": artefact.name, "sha256": _sha256(artefact),
            "architecture": arch.to_dict(), "space_config": dict(space.config),
            "network": network, "provenance": provenance, **extra,
            "inputs": [{"name": "input", "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                       for t in inputs],
            "metadata": dict(metadata or {}), "torch": _torch_version(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _replace_dir(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return out


def _write_safetensors(module: torch.nn.Module, inputs: tuple, path: Path) -> None:
    from safetensors.torch import save_file

    # cloned: safetensors refuses tensors that share memory (tied embeddings)
    save_file({k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}, str(path))


def _write_torchscript(module: torch.nn.Module, inputs: tuple, path: Path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:  # scripting keeps control flow; tracing is the fallback for what scripting rejects
            scripted = torch.jit.script(module)
        except Exception:
            scripted = torch.jit.trace(module, inputs)
        torch.jit.save(scripted, str(path))


def _write_onnx(module: torch.nn.Module, inputs: tuple, path: Path) -> None:
    import contextlib
    import sys
    import warnings

    import torch

    names = [f"input{i}" if i else "input" for i in range(len(inputs))]
    axes = {n: {0: "batch"} for n in names} | {"output": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, tuple(inputs), str(path), dynamo=False, opset_version=17,
                              input_names=names, output_names=["output"], dynamic_axes=axes)
        except (TypeError, AttributeError, ImportError, NotImplementedError):  # the legacy exporter is gone
            with contextlib.redirect_stdout(sys.stderr):
                torch.onnx.export(module, tuple(inputs), str(path), dynamo=True, input_names=names,
                                  output_names=["output"], dynamic_axes=axes)


_WRITERS = {"safetensors": _write_safetensors, "torchscript": _write_torchscript, "onnx": _write_onnx}


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an existing ``out`` is removed only once ``new`` is in place."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)  # an export directory (checked before the export began)


def zip_directory(directory: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(directory.iterdir()):
            z.write(p, p.name)
    return buf.getvalue()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _spaces_exporting_hf() -> list[str]:
    from ._registry import list_spaces, space_class

    return [n for n in list_spaces() if space_class(n).exports_hf]


def _spaces_with_weights() -> list[str]:
    from ._registry import list_spaces, space_class

    return [n for n in list_spaces() if space_class(n).has_weights()]


# -- load ---------------------------------------------------------------------------------
def load_architecture(source: str | os.PathLike, *, token: str | None = None, timeout: float = 60.0):
    """The found architecture as a ``torch.nn.Module`` with its inherited weights, in eval mode.

    ``source`` is an export directory, a file in one (``architecture.json``,
    ``model.safetensors``, ``model.pt``), a zip of one, an API URL (an architecture's or its
    export's), or, with ``NAS_API_URL`` set, an id: ``ARCH_ID`` or ``JOB_ID/ARCH_ID``.
    ``token`` (default ``$NAS_API_TOKEN``) authenticates to a server that asks for one.
    The module carries ``.architecture`` (the :class:`Architecture`) and ``.manifest``.
    """
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        return _load_url(text, token, timeout)
    path = Path(text).expanduser()
    if path.exists():
        return _load_path(path)
    api = os.environ.get(API_ENV_VAR)
    ids = text.strip("/").split("/")
    if api and len(ids) <= 2 and all(i.isalnum() for i in ids):  # ARCH_ID or JOB_ID/ARCH_ID
        job, arch = ids if len(ids) == 2 else ("", ids[0])
        url = f"{api.rstrip('/')}/api/v1/" + (f"jobs/{job}/architectures/{arch}" if job else f"architectures/{arch}")
        return _load_url(url, token, timeout)
    hint = "" if api else f"; to load by id, set {API_ENV_VAR} to the service's URL"
    raise LoadError(f"source: {text!r} is not a file, a directory or a URL{hint}")


def _load_path(path: Path):
    if path.is_dir():
        return _load_dir(path)
    if path.suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            _safe_extract(path.read_bytes(), Path(tmp), str(path))
            return _load_dir(Path(tmp))
    if path.name == MANIFEST or path.suffix in (".safetensors", ".pt", ".onnx"):
        return _load_dir(path.parent, prefer=path.name if path.name != MANIFEST else None)
    raise LoadError(f"source: {path} is not an export (a directory with {MANIFEST}, or a file in one)")


def _load_dir(d: Path, prefer: str | None = None):
    import torch

    mpath = d / MANIFEST
    if not mpath.exists():
        raise LoadError(f"source: {d} has no {MANIFEST}; is it a directory written by `nas export`?")
    try:
        manifest = json.loads(mpath.read_text())
        arch = Architecture.from_dict(manifest["architecture"])
    except (ValueError, KeyError, TypeError) as e:
        raise LoadError(f"source: {mpath} is not a valid manifest ({type(e).__name__}: {e})") from None
    files = [prefer] if prefer else ["model.safetensors", "model.pt", "model.onnx"]
    present = [f for f in files if (d / f).exists()]
    if not present:
        raise LoadError(f"weights: {d} has no weights file (model.safetensors or model.pt); "
                        "the export is incomplete: export it again")
    name = present[0]
    if name == "model.onnx":
        raise LoadError(f"source: {d / name} is an ONNX artefact: run it with "
                        f"onnxruntime.InferenceSession({str(d / name)!r}); load_architecture builds torch modules "
                        "from safetensors or TorchScript exports")
    expected = manifest.get("sha256") if manifest.get("file") == name else None
    if expected and _sha256(d / name) != expected:
        raise LoadError(f"weights: {d / name} is not the file the export wrote (its sha256 differs from "
                        f"{MANIFEST}'s); export it again")
    if name == "model.pt":
        module = torch.jit.load(str(d / name), map_location="cpu")
    else:
        module = _build_from_safetensors(d / name, manifest, arch)
    module.eval()
    module.architecture = arch
    module.manifest = manifest
    return module


def _build_from_safetensors(path: Path, manifest: dict[str, Any], arch: Architecture):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ._registry import space_class

    cls = space_class(arch.space)
    if arch.space_version != cls.version:
        raise LoadError(f"architecture: exported from {arch.space} version {arch.space_version}; this installation "
                        f"has version {cls.version}")
    if "network" not in manifest:
        raise LoadError(f"source: {path.parent / MANIFEST} has no network config")
    module = cls.build_network(manifest["network"])
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise LoadError(f"weights: {path} is not a readable safetensors file ({e})") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"missing {len(missing)} (e.g. {missing[0]})" if missing else "",
                 f"unexpected {len(unexpected)} (e.g. {unexpected[0]})" if unexpected else "",
                 f"wrong shape {len(wrong)} (e.g. {wrong[0]})" if wrong else ""]
        raise LoadError(f"weights: {path} does not match the network of {arch.arch_id}: "
                        + "; ".join(p for p in parts if p))
    module.load_state_dict(weights)
    return module


def _load_url(url: str, token: str | None, timeout: float):
    import urllib.error
    import urllib.request

    if "/export" not in url:  # an architecture's URL: ask for its safetensors export
        url = url.rstrip("/") + "/export?format=safetensors"
    token = token or os.environ.get(TOKEN_ENV_VAR)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", "")
        except ValueError:
            detail = ""
        raise LoadError(f"source: {url} answered {e.code} {e.reason}" + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise LoadError(f"source: {url} does not answer ({reason}); is the service running?") from None
    with tempfile.TemporaryDirectory() as tmp:
        _safe_extract(data, Path(tmp), url)
        return _load_dir(Path(tmp))


def _safe_extract(data: bytes, into: Path, origin: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for name in z.namelist():
                if "/" in name or "\\" in name or name.startswith("."):  # exports are flat
                    raise LoadError(f"source: {origin} holds an unexpected entry {name!r}")
            z.extractall(into)
    except zipfile.BadZipFile:
        raise LoadError(f"source: {origin} is not an export archive (not a zip file)") from None


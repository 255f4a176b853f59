"""Export of an architecture found by a job: what ``nas export`` and the API's export route run.

The job fixes the space config (which parent) and the provenance its metrics were measured
with; the trial gives the metrics written into the export's manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spaces import Architecture, ExportError, get_space, export_architecture

from .errors import ArchitectureNotFoundError
from .storage import Store

__all__ = ["export_from_job"]


def export_from_job(store: Store, job_id: str | None, arch_id: str, out: str | Path, *,
                    format: str = "safetensors", force: bool = False, train_parent: bool = False) -> Path:
    """Export ``arch_id`` as measured by ``job_id`` (or by the latest job that measured it).

    A parent missing on this machine is an error (``train_parent=False``): the export must
    carry the weights the job measured, and `nas parents train` is the explicit way to get them.
    """
    trial = store.find_trial(arch_id, job_id)
    if trial is None:
        if job_id is not None:
            store.get_job(job_id)  # an unknown job is its own error
            raise ArchitectureNotFoundError(f"arch_id: got {arch_id!r}; not an architecture of job {job_id} "
                                            f"(its trials list them: nas show {job_id})")
        raise ArchitectureNotFoundError(f"arch_id: got {arch_id!r}; no job has measured such an architecture")
    job = store.get_job(trial.job_id)
    space_spec = dict(job.spec.get("space", {}))
    space = get_space(space_spec.pop("name"), **space_spec)
    arch = Architecture.from_dict(trial.arch)
    if trial.state != "complete":
        raise ExportError("architecture", f"{arch_id} was not measured by job {job.id} (its trial is {trial.state})")
    metadata: dict[str, Any] = {"job_id": job.id, "trial": trial.number, "metrics": trial.metrics or {},
                                "values": trial.values or {}}
    return export_architecture(space, arch, out, format=format, force=force,
                               expected_provenance=job.provenance, metadata=metadata,
                               train_parent=train_parent)

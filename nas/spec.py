"""``JobSpec``: what a user asks the engine to do (YAML or JSON), validated in full before anything is stored."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError

__all__ = ["JobSpec", "SpaceSpec", "ObjectiveSpec", "ConstraintSpec", "StrategySpec", "BudgetSpec",
           "ExecutionSpec", "load_spec"]

Direction = Literal["minimize", "maximize"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpaceSpec(BaseModel):
    """``name`` plus the space's own config keys (e.g. ``dataset`` for nb201)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    name: str

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ObjectiveSpec(_Frozen):
    name: str
    device: str | None = None
    direction: Direction | None = None  # default: the metric's natural direction


class ConstraintSpec(_Frozen):
    name: str
    device: str | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ConstraintSpec:
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class StrategySpec(BaseModel):
    """``name`` plus strategy parameters (e.g. ``batch_size``, ``candidates``)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BudgetSpec(_Frozen):
    evaluations: int = Field(gt=0, le=10**9, description="number of real evaluations (1..1e9)")


class ExecutionSpec(_Frozen):
    backend: Literal["ray", "inline"] = "ray"
    max_concurrent: int = Field(default=2, gt=0, le=4096)
    max_retries: int = Field(default=2, ge=0, le=100)


class JobSpec(_Frozen):
    space: SpaceSpec
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    strategy: StrategySpec = StrategySpec(name="predictor-guided")
    budget: BudgetSpec
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    execution: ExecutionSpec = ExecutionSpec()
    name: str | None = None

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, v: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        seen = set()
        for o in v:
            if (o.name, o.device) in seen:
                raise ValueError(f"objective {o.name}{'@' + o.device if o.device else ''} is listed twice")
            seen.add((o.name, o.device))
        return v

    # -- parsing -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        if not isinstance(data, dict):
            raise SpecError("spec", type(data).__name__, "a mapping with keys space, objectives, budget, ...")
        _check_numbers(data, "")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise _spec_error(e, data) from None

    @classmethod
    def from_text(cls, text: str) -> JobSpec:
        import yaml

        try:
            data = yaml.safe_load(text)  # JSON is YAML
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise SpecError("spec", f"malformed YAML/JSON{where}", "a YAML or JSON mapping",
                            reason=str(getattr(e, "problem", e))) from None
        return cls.from_dict(data)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))


_INT64 = 2**63 - 1


def _check_numbers(value: Any, path: str) -> None:
    """Every number in a spec, extras included, is one a database and JSON can hold: no NaN or
    infinity (``1e999`` parses as one), no integer beyond 64 bits. Checked before anything
    else, so such a spec is refused by name instead of failing (or being stored) later."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(path or "spec", value, "a finite number")
    if isinstance(value, int) and not -_INT64 - 1 <= value <= _INT64:
        raise SpecError(path or "spec", value, "an integer that fits in 64 bits")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]")


def load_spec(path: str | Path) -> JobSpec:
    p = Path(path)
    if not p.is_file():
        raise SpecError("spec", str(path), "a path to a YAML or JSON file", reason="file not found")
    return JobSpec.from_text(p.read_text())


def _spec_error(e: ValidationError, data: dict) -> SpecError:
    err = e.errors()[0]
    field = ""
    for p in err["loc"]:
        if isinstance(p, int):
            field += f"[{p}]"
        elif not str(p).startswith("function-after"):
            field += f".{p}" if field else str(p)
    field = field or "spec"
    given = err.get("input", None)
    kind = err["type"]
    ctx = err.get("ctx", {})
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return SpecError(field, None, "a value (this field is required)", reason="missing")
    bounds = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}", "less_than": "less than {lt}",
              "less_than_equal": "at most {le}"}
    if kind in bounds:
        return SpecError(field, given, "a number " + bounds[kind].format(**ctx))
    if kind == "too_short":
        return SpecError(field, given, f"a list of at least {ctx.get('min_length')} item(s)")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return SpecError(field, given, msg.lower().removeprefix("input should be "))
    if kind == "extra_forbidden":
        parent = err["loc"][:-1]
        model = JobSpec
        for p in parent:
            if isinstance(p, int):
                continue
            ann = model.model_fields[str(p)].annotation
            model = getattr(ann, "__args__", (ann,))[0] if hasattr(ann, "__args__") else ann
        valid = ", ".join(model.model_fields) if hasattr(model, "model_fields") else ""
        return SpecError(field, err["loc"][-1], valid, reason="unknown key")
    if kind == "literal_error":
        return SpecError(field, given, err.get("ctx", {}).get("expected", ""))
    if isinstance(given, dict) and len(str(given)) > 80:
        given = "{...}"
    return SpecError(field, given, "", reason=msg)

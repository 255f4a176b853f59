"""``create_app(settings, store)``: the FastAPI application (routes under ``/api/v1``)."""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from .auth import require
from .settings import Settings

__all__ = ["create_app", "API_PREFIX"]

API_PREFIX = "/api/v1"
MAX_PAGE = 1000


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nas-service")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0+unknown"


class _BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes gets 413 before any route runs.

    Checked on Content-Length, and for a chunked body by reading it here (at most ``limit``
    bytes are buffered) and replaying it to the app: an exception raised from inside the app's
    own body reader would be turned into a 400 by FastAPI.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(send)
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": f"body: larger than {self.limit} bytes; send a smaller request "
                                     "(NAS_MAX_BODY_BYTES sets the limit)", "field": "body"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[dict], receive):
    """An ASGI ``receive`` that first returns ``messages``, then defers to the real one."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


def _lifespan(settings: Settings):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from anyio import to_thread

        # the routes are plain functions run in anyio's thread pool; its 40 threads fighting for
        # the GIL cost more than they overlap (a request's SQL is well under a millisecond), and
        # under a burst that contention made every request slower: a few threads drain it faster
        to_thread.current_default_thread_limiter().total_tokens = settings.threads
        yield

    return lifespan


def create_app(settings: Settings | None = None, store: Any = None) -> FastAPI:
    """The API over ``store`` (a :class:`nas.storage.Store`; default: ``settings.database_url``)."""
    from nas.storage import Store

    settings = settings or Settings.from_env()
    store = store or Store(settings.database_url)
    app = FastAPI(title="nas-service", version=_version(), lifespan=_lifespan(settings),
                  description="Neural architecture search as a service: jobs, trials, Pareto fronts, "
                              "architectures, spaces, latency targets and measurements.")
    app.state.settings, app.state.store = settings, store
    app.state.pareto_cache, app.state.pareto_lock = {}, threading.Lock()
    from nas.fronts import StoredFronts

    app.state.fronts = StoredFronts(store)
    from .refit import Refitter

    app.state.refitter = Refitter(store)
    _errors(app)
    app.include_router(_routes(), prefix=API_PREFIX)
    from .dashboard import dashboard_router

    app.include_router(dashboard_router())
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.openapi = _complete_openapi(app)
    return app


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _complete_openapi(app: FastAPI):
    """FastAPI's document plus what it cannot infer here: the job spec's schema (the route takes
    a plain object to report its own errors by field), the bearer scheme, and the 4xx each
    operation can answer."""
    from fastapi.openapi.utils import get_openapi

    from nas.spec import JobSpec

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        spec = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(spec.pop("$defs", {}))
        schemas["JobSpec"] = spec
        schemas["Error"] = {"type": "object", "required": ["detail"], "properties": {
            "detail": {"type": "string", "description": "what is wrong and what is valid"},
            "field": {"type": "string", "description": "the field at fault (body, job_id, constraints[0].max, ...)"}}}
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "description": (
            "an API token (`nas tokens create`); reads need none when the server is bound to loopback")}}
        body = doc["paths"][f"{API_PREFIX}/jobs"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"] = {"$ref": "#/components/schemas/JobSpec"}
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if not path.startswith(API_PREFIX) or path.endswith(("/health", "/version")):
                    continue
                op["security"] = [{"bearer": []}]
                answers = op.setdefault("responses", {})
                answers.setdefault("401", {"description": "token missing, unknown or revoked", **_ERROR})
                answers.setdefault("403", {"description": "the token lacks the scope", **_ERROR})
                if "{" in path:
                    answers.setdefault("404", {"description": "unknown id or name", **_ERROR})
                if path.endswith(("/cancel", "/resume")) or path.endswith("/export") or (
                        path.endswith("/targets") and method == "post"):
                    answers.setdefault("409", {"description": "not possible in the current state", **_ERROR})
                if method == "post":
                    answers.setdefault("413", {"description": "body larger than NAS_MAX_BODY_BYTES", **_ERROR})
        app.openapi_schema = doc
        return doc

    return openapi


def _errors(app: FastAPI) -> None:
    """Every error a client can cause, mapped in one place to a 4xx that names the field."""
    from latency import LatencyError
    from nas.errors import ArchitectureNotFoundError, JobConflictError, JobNotFoundError, SpecError
    from spaces import SpacesError

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ""
        for p in first.get("loc", ())[1:] if first.get("loc", ("",))[0] == "body" else first.get("loc", ()):
            loc += f"[{p}]" if isinstance(p, int) else (f".{p}" if loc else str(p))
        loc = f"body{loc}" if loc.startswith("[") else (loc or "body")  # a list body's items: body[3]
        if first.get("type") == "json_invalid":
            loc = "body"  # pydantic's loc is the character position
            msg = f"body: not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
        else:
            given = first.get("input")
            shown = given if isinstance(given, (int, float, str, bool, type(None))) else type(given).__name__
            msg = f"{loc}: got {shown!r}; {first.get('msg', 'invalid')}"
        return JSONResponse({"detail": msg, "field": loc}, status_code=422)

    @app.exception_handler(SpecError)
    async def spec(request: Request, exc: SpecError):
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)

    @app.exception_handler(LatencyError)
    async def latency(request: Request, exc: LatencyError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(JobNotFoundError)
    async def not_found(request: Request, exc: JobNotFoundError):
        # not str(exc): it names the database (a URL with user and host) for the CLI's user
        return JSONResponse({"detail": f"job_id: got {exc.job_id!r}; no such job (GET {API_PREFIX}/jobs lists them)",
                             "field": "job_id"}, status_code=404)

    @app.exception_handler(ArchitectureNotFoundError)
    async def arch_not_found(request: Request, exc: ArchitectureNotFoundError):
        return JSONResponse({"detail": str(exc), "field": "arch_id"}, status_code=404)

    @app.exception_handler(SpacesError)
    async def space_error(request: Request, exc: SpacesError):
        from spaces import ExportError, ParentNotTrainedError

        field = getattr(exc, "field", None)
        # no weights to export, or not the weights the job measured: the request is fine, the state is not
        status = 409 if isinstance(exc, ParentNotTrainedError) or (isinstance(exc, ExportError)
                                                                   and field == "architecture") else 422
        return JSONResponse({"detail": str(exc), "field": field or "body"}, status_code=status)

    @app.exception_handler(JobConflictError)
    async def conflict(request: Request, exc: JobConflictError):
        return JSONResponse({"detail": str(exc)}, status_code=409)


def _job_json(rec) -> dict[str, Any]:
    d = rec.to_dict()
    d["url"] = f"{API_PREFIX}/jobs/{rec.id}"
    return d


def _trial_json(t) -> dict[str, Any]:
    return {"number": t.number, "round": t.round, "state": t.state, "arch_id": t.arch_id, "arch": t.arch["params"],
            "values": t.values, "metrics": t.metrics, "feasible": t.feasible, "constraints": t.constraints,
            "source": t.source, "error": t.error, "duration_s": t.duration_s,
            "export_url": f"{API_PREFIX}/jobs/{t.job_id}/architectures/{t.arch_id}/export"}


def _routes() -> APIRouter:
    from nas.engine import prepare_job
    from nas.spec import JobSpec

    r = APIRouter()
    Limit = Query(50, ge=1, le=MAX_PAGE, description=f"page size (1..{MAX_PAGE})")
    Offset = Query(0, ge=0, le=10**9, description="items to skip (0..1e9)")
    ExportFormat = Query("safetensors", max_length=40, description="safetensors, torchscript, onnx or hf (llm-subnet)")

    # -- service ------------------------------------------------------------------
    @r.get("/health", tags=["service"])
    def health(request: Request) -> dict[str, Any]:
        from sqlalchemy import text

        try:
            with request.app.state.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db = "ok"
        except Exception as e:  # reported, not raised: a health check answers
            db = f"error: {type(e).__name__}"
        return {"status": "ok" if db == "ok" else "degraded", "database": db}

    @r.get("/version", tags=["service"])
    def version() -> dict[str, Any]:
        return {"version": _version(), "api": "v1"}

    # -- spaces -------------------------------------------------------------------
    @r.get("/spaces", tags=["spaces"], dependencies=[require("read")])
    def spaces() -> dict[str, Any]:
        from spaces import get_space, list_spaces

        return {"items": [get_space(n).describe() for n in list_spaces()]}

    @r.get("/spaces/{name}", tags=["spaces"], dependencies=[require("read")])
    def space(name: str) -> dict[str, Any]:
        from spaces import UnknownSpaceError, get_space

        try:
            return get_space(name).describe()
        except UnknownSpaceError as e:
            return JSONResponse({"detail": str(e), "field": "name"}, status_code=404)

    # -- jobs ---------------------------------------------------------------------
    @r.post("/jobs", status_code=202, tags=["jobs"], dependencies=[require("write")])
    def create_job(request: Request, spec: dict[str, Any] = Body(..., description="a job spec (see the README)")):
        job = prepare_job(JobSpec.from_dict(spec))  # everything validated before a row is written
        s = job.spec
        rec = request.app.state.store.create_job(s.model_dump(mode="json", exclude_none=True), space=s.space.name,
                                                 strategy=s.strategy.name, seed=s.seed, budget=s.budget.evaluations,
                                                 name=s.name, state="queued")
        return JSONResponse(_job_json(rec), status_code=202, headers={"Location": f"{API_PREFIX}/jobs/{rec.id}"})

    # The polled reads return ready JSON (FastAPI's generic encoder costs more than the query);
    # they stay plain functions, run in the thread pool: a Pareto recompute must not block the loop.
    @r.get("/jobs", tags=["jobs"], dependencies=[require("read")])
    def list_jobs(request: Request, state: str | None = Query(None, pattern="^(queued|running|completed|"
                                                                                "failed|cancelled)$"),
                        limit: int = Limit, offset: int = Offset):
        store = request.app.state.store
        items = [_job_json(j) for j in store.list_jobs(state=state, limit=limit, offset=offset)]
        return JSONResponse({"items": items, "total": store.count_jobs(state), "limit": limit, "offset": offset})

    @r.get("/jobs/{job_id}", tags=["jobs"], dependencies=[require("read")])
    def get_job(request: Request, job_id: str):
        return JSONResponse(_job_json(request.app.state.store.get_job(job_id)))

    @r.post("/jobs/{job_id}/cancel", status_code=202, tags=["jobs"], dependencies=[require("write")])
    def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
        return _job_json(request.app.state.store.request_cancel(job_id))

    @r.post("/jobs/{job_id}/resume", status_code=202, tags=["jobs"], dependencies=[require("write")])
    def resume_job(request: Request, job_id: str) -> dict[str, Any]:
        return _job_json(request.app.state.store.requeue(job_id))

    @r.get("/jobs/{job_id}/trials", tags=["jobs"], dependencies=[require("read")])
    def trials(request: Request, job_id: str, state: str | None = Query(None, pattern="^(complete|fail|unmeasured)$"),
               sort: str = Query("number", max_length=200, description="number, or a metric key "
                                 "(accuracy, latency_ms@raspi4)"),
               order: str = Query("asc", pattern="^(asc|desc)$"), limit: int = Limit,
               offset: int = Offset) -> dict[str, Any]:
        store = request.app.state.store
        rec = store.get_job(job_id)
        if sort != "number":
            keys = prepare_job(JobSpec.from_dict(rec.spec), runnable=False).problem.keys
            if sort not in keys:
                return JSONResponse({"detail": f"sort: got {sort!r}; valid: number, {', '.join(keys)}",
                                     "field": "sort"}, status_code=422)
        rows, total = store.page_trials(job_id, state=state, sort=sort, desc=order == "desc", limit=limit,
                                        offset=offset)
        return JSONResponse({"items": [_trial_json(t) for t in rows], "total": total, "limit": limit,
                             "offset": offset})

    @r.get("/jobs/{job_id}/pareto", tags=["jobs"], dependencies=[require("read")])
    def pareto(request: Request, job_id: str) -> dict[str, Any]:
        store = request.app.state.store
        rec = store.get_job(job_id)
        key = (job_id, rec.n_trials, rec.state)
        cache = request.app.state.pareto_cache
        with request.app.state.pareto_lock:
            body = cache.get(key)
        if body is None:  # recomputed only when the job has new trials
            job = prepare_job(JobSpec.from_dict(rec.spec), runnable=False)
            front = request.app.state.fronts.get(job_id, rec.n_trials, job.problem)
            body = {"objectives": [o.__dict__ for o in job.problem.objectives],
                    "constraints": [c.__dict__ for c in job.problem.constraints],
                    "items": [_trial_json(t) for t in front]}
            with request.app.state.pareto_lock:
                cache[key] = body
                while len(cache) > 256:
                    cache.pop(next(iter(cache)))
        return JSONResponse(body)

    @r.get("/jobs/{job_id}/hypervolume", tags=["jobs"], dependencies=[require("read")])
    def hypervolume(request: Request, job_id: str) -> dict[str, Any]:
        store = request.app.state.store
        store.get_job(job_id)
        return {"items": [{"round": x.round, "n_evaluations": x.n_evaluations, "hypervolume": x.hypervolume,
                           "best": x.best} for x in store.load_rounds(job_id)]}

    @r.get("/jobs/{job_id}/logs", tags=["jobs"], dependencies=[require("read")])
    def logs(request: Request, job_id: str) -> dict[str, Any]:
        store = request.app.state.store
        store.get_job(job_id)
        return {"items": [{"level": lv, "message": m} for lv, m in store.logs(job_id)]}

    # -- architectures ------------------------------------------------------------
    @r.get("/architectures/{arch_id}", tags=["architectures"], dependencies=[require("read")])
    def architecture(request: Request, arch_id: str, job: str | None = Query(None, max_length=64, description=(
            "a job id: include the job's trial of this architecture (metrics, values, constraints)"))):
        """The architecture (space, params, the space config its job searched), its import snippet,
        its measured latency on every Target, and with ``job`` the job's trial of it."""
        store = request.app.state.store
        a = store.get_architecture(arch_id)
        if a is None:
            return JSONResponse({"detail": f"arch_id: got {arch_id!r}; no such architecture", "field": "arch_id"},
                                status_code=404)
        if job is not None:
            store.get_job(job)  # 404 naming job_id if unknown
        a["space_config"] = store.space_config(arch_id, job)
        latest = {m.target.key: m for m in store.load_measurements(subject=arch_id)}  # the newest per Target
        out = {**a, "snippet": _snippet(a), "latency": [
            {"target": k, "name": m.target.name, "device": m.target.device, "backend": m.target.backend,
             "median_ms": m.median_ms if m.ok else None, "p90_ms": m.p90_ms if m.ok else None, "error": m.error,
             "machine": m.machine, "timestamp": m.timestamp} for k, m in sorted(latest.items())]}
        if job is not None:
            t = store.find_trial(arch_id, job)
            out["trial"] = None if t is None else _trial_json(t)
        return out

    # -- latency targets and measurements -------------------------------------------
    @r.get("/targets", tags=["latency"], dependencies=[require("read")])
    def targets(request: Request) -> dict[str, Any]:
        from latency import BUILTIN_TARGETS

        stored = {t.key: t for t in request.app.state.store.list_targets()}
        items = {t.key: t for t in BUILTIN_TARGETS.values()} | stored
        return {"items": [t.to_dict() | {"key": t.key} for t in items.values()]}

    @r.post("/targets", status_code=201, tags=["latency"], dependencies=[require("agent")])
    def register_target(request: Request, target: dict[str, Any] = Body(...)) -> dict[str, Any]:
        from latency import Target

        try:
            t = Target.from_dict(target)
        except (TypeError, ValueError) as e:
            # an InvalidTargetError names its own field (target.backend, ...) in its message too
            field = getattr(e, "field", None)
            detail = str(e) if field else f"target: {e}"
            return JSONResponse({"detail": detail, "field": field or "target"}, status_code=422)
        store = request.app.state.store
        clash = _name_clash(store, [t])
        if clash is not None:
            return clash
        store.add_target(t)
        return t.to_dict() | {"key": t.key}

    @r.get("/targets/{name:path}/measurements", tags=["latency"], dependencies=[require("read")])
    def measurements(request: Request, name: str, limit: int = Limit, offset: int = Offset):
        store = request.app.state.store
        try:
            target = store.find_target(name)
        except KeyError as e:
            return JSONResponse({"detail": str(e.args[0]), "field": "name"}, status_code=404)
        items = store.load_measurements(target, limit=limit, offset=offset)
        return {"items": [m.to_dict() for m in items], "limit": limit, "offset": offset}

    @r.post("/measurements", status_code=201, tags=["latency"], dependencies=[require("agent")])
    def post_measurements(request: Request, items: list[dict[str, Any]] = Body(..., max_length=10_000)):
        from latency import Measurement

        ms = []
        for i, d in enumerate(items):
            try:
                ms.append(Measurement.from_dict(d))
            except Exception as e:  # every bad item is named; nothing is stored
                return JSONResponse({"detail": f"items[{i}].{e}", "field": f"items[{i}]"}, status_code=422)
        clash = _name_clash(request.app.state.store, [m.target for m in ms])
        if clash is not None:
            return clash
        stored = request.app.state.store.add_measurements(ms)
        for target in {m.target.key: m.target for m in ms}.values():
            request.app.state.refitter.request(target)  # in the background: the agent is not kept waiting
        return {"stored": stored}

    @r.get("/targets/{name:path}/work", tags=["latency"], dependencies=[require("agent")])
    def work(request: Request, name: str, limit: int = Query(4, ge=1, le=100)):
        """Architectures to profile on this target: those of jobs' spaces with networks, newest
        first, not measured on it yet. Each comes with its ONNX artefact URL (for an agent with
        ONNX Runtime alone) and its space and params (for an agent that builds it with torch)."""
        store = request.app.state.store
        try:
            target = store.find_target(name)
        except KeyError as e:
            return JSONResponse({"detail": str(e.args[0]), "field": "name"}, status_code=404)
        items: list[dict[str, Any]] = []
        for _ in range(10):  # an unbuildable one is recorded as failed, so the next call moves past it
            want = limit - len(items)
            batch = store.unmeasured_architectures(target, limit=want, spaces=_spaces_with_networks())
            for a in batch:
                a["space_config"] = store.space_config(a["arch_id"])
                try:
                    shape = _input_shape(a, target.batch)
                except Exception as e:  # one architecture that cannot be built must not stop every agent
                    store.add_measurements([_failed_measurement(target, a, e)])
                    continue
                items.append({**a, "onnx_url": f"{API_PREFIX}/architectures/{a['arch_id']}/onnx?batch={target.batch}",
                              "input_shape": shape})
            if len(items) >= limit or len(batch) < want:  # full, or nothing more to hand out
                break
        return {"target": target.to_dict() | {"key": target.key}, "items": items}

    @r.get("/jobs/{job_id}/architectures/{arch_id}/export", tags=["architectures"],
           dependencies=[require("read")], response_class=Response,
           responses={200: {"content": {"application/zip": {}}, "description": "the export directory, zipped"}})
    def export_job_architecture(request: Request, job_id: str, arch_id: str, format: str = ExportFormat):
        """The architecture as measured by this job, with its inherited weights: a zip of the
        directory `nas export` writes (`architecture.json` and the model file)."""
        return _export_zip(request.app.state.store, job_id, arch_id, format)

    @r.get("/architectures/{arch_id}/export", tags=["architectures"], dependencies=[require("read")],
           response_class=Response,
           responses={200: {"content": {"application/zip": {}}, "description": "the export directory, zipped"}})
    def export_architecture(request: Request, arch_id: str, format: str = ExportFormat):
        """Like the job's export, from the most recent job that measured the architecture."""
        return _export_zip(request.app.state.store, None, arch_id, format)

    @r.get("/architectures/{arch_id}/onnx", tags=["architectures"], dependencies=[require("read", "agent")])
    def onnx_artefact(request: Request, arch_id: str, batch: int = Query(1, ge=1, le=256)):
        """The architecture's network exported to ONNX (weights as built; inputs of the space's shape)."""

        store = request.app.state.store
        a = store.get_architecture(arch_id)
        if a is None:
            return JSONResponse({"detail": f"arch_id: got {arch_id!r}; no such architecture", "field": "arch_id"},
                                status_code=404)
        a["space_config"] = store.space_config(arch_id)
        try:
            data = _export_onnx(a, batch)
        except Exception as e:  # no network to build, an export the exporter refuses: the client's 422
            return JSONResponse({"detail": f"arch_id: cannot export {arch_id} to ONNX: {type(e).__name__}: {e}",
                                 "field": "arch_id"}, status_code=422)
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{arch_id}.onnx"'})

    @r.get("/targets/{name:path}/model", tags=["latency"], dependencies=[require("read")])
    def latency_model(request: Request, name: str):
        store = request.app.state.store
        try:
            target = store.find_target(name)
        except KeyError as e:
            return JSONResponse({"detail": str(e.args[0]), "field": "name"}, status_code=404)
        found = store.load_latency_model(target)
        if found is None:
            return JSONResponse({"detail": f"target {name!r} has no fitted latency model yet (it needs "
                                 "measurements of at least 5 architectures)"}, status_code=404)
        return {"target": target.to_dict() | {"key": target.key}, **found[1]}

    return r


def _name_clash(store: Any, targets: list[Any]) -> JSONResponse | None:
    """409 if one of ``targets`` would give a name to a second Target (stored or built-in): a
    name must find one Target, as the agent's ``--target`` and the ``/targets/NAME`` routes look
    it up by name."""
    from latency import BUILTIN_TARGETS

    known = {x.key: x for x in BUILTIN_TARGETS.values()} | {x.key: x for x in store.list_targets()}
    for t in targets:
        other = next((x for x in known.values() if x.name == t.name and x.key != t.key), None)
        if other is not None:
            return JSONResponse({"detail": f"name: got {t.name!r}, already the name of the target {other.key!r} "
                                 "(another device, backend, batch or shape); choose another name",
                                 "field": "name"}, status_code=409)
    return None


def _spaces_with_networks() -> list[str]:
    """Spaces whose architectures can be built as torch modules (and so be profiled)."""
    from spaces import SearchSpace, list_spaces, space_class

    return [n for n in list_spaces() if space_class(n).materialize is not SearchSpace.materialize]


_EXPORT_LOCK = threading.Lock()


def _export_zip(store, job_id: str | None, arch_id: str, format: str):
    import tempfile
    from pathlib import Path

    from nas.export import export_from_job
    from spaces._export import zip_directory

    # one export at a time: TorchScript and ONNX exporters are not safe to run in parallel threads
    with _EXPORT_LOCK, tempfile.TemporaryDirectory() as tmp:
        # never train a parent inside a request: the runner that measured the job trained it
        path = export_from_job(store, job_id, arch_id, Path(tmp) / "export", format=format, train_parent=False)
        data = zip_directory(path)
    name = f"{arch_id}-{format}.zip"
    return Response(data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _failed_measurement(target: Any, a: dict[str, Any], error: Exception) -> Any:
    """A failed Measurement of ``a`` on ``target``: recorded, so the architecture is not handed out again."""
    from latency import Measurement

    return Measurement(target=target, subject=a["arch_id"],
                       error=f"cannot build {a['space']} {a['arch_id']}: {type(error).__name__}: {error}")


def _space(a: dict[str, Any]):
    from spaces import get_space

    return get_space(a["space"], **a.get("space_config", {}))


def _input_shape(a: dict[str, Any], batch: int) -> list[int]:
    space = _space(a)
    return list(space.example_inputs(space.from_params(a["params"]), batch=batch)[0].shape)


def _export_onnx(a: dict[str, Any], batch: int) -> bytes:
    import tempfile
    from pathlib import Path

    from latency.profilers import export_onnx

    space = _space(a)
    arch = space.from_params(a["params"])
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(space.materialize(arch), space.example_inputs(arch, batch=batch), Path(tmp) / "m.onnx")
        return path.read_bytes()


def _snippet(a: dict[str, Any]) -> str:
    params = json.dumps(a["params"], sort_keys=True)
    config = "".join(f", {k}={v!r}" for k, v in sorted(a.get("space_config", {}).items()))
    return (f"from spaces import get_space\n\nspace = get_space({a['space']!r}{config})\n"
            f"arch = space.from_params({params})\nmodel = space.materialize(arch)  # a plain torch.nn.Module\n")

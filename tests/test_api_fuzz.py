"""Schemathesis against the app's own OpenAPI: generated requests (well-formed and not) to every
operation; no response may be a server error. Writes use an admin token so the requests reach
the handlers instead of stopping at 401. Over a thousand requests in all (see the counter)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from api import Settings, create_app  # noqa: E402
from nas.storage import Store  # noqa: E402

pytestmark = pytest.mark.slow

_store = None
CALLS = {"n": 0, "by_status": {}}


def _app():
    import tempfile

    global _store
    tmp = tempfile.mkdtemp(prefix="nas-fuzz-")
    _store = Store(f"sqlite:///{tmp}/fuzz.db")
    return create_app(Settings(database_url=_store.url), _store)


APP = _app()
TOKEN, _ = _store.create_token("fuzz", ["admin"])
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    CALLS["n"] += 1
    CALLS["by_status"][response.status_code] = CALLS["by_status"].get(response.status_code, 0) + 1
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: " \
                                       f"{response.text[:500]}"


def test_the_fuzzer_sent_over_a_thousand_requests():
    # runs after the parametrised test above (same module, file order)
    print(CALLS)
    assert CALLS["n"] >= 1000, CALLS

"""Shared fixtures: database URLs (SQLite and PostgreSQL) and a tiny job spec.

PostgreSQL (DESIGN §8): the server at ``$NAS_TEST_POSTGRES_URL`` (default
``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``) is shared by every run on the
machine, so each test gets its own database ``nas_test_<uuid hex>``, created before and
dropped after (``WITH (FORCE)``). When no server answers, the test is skipped with a reason
that names the URL.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

POSTGRES_ENV_VAR = "NAS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    return os.environ.get(POSTGRES_ENV_VAR) or DEFAULT_POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite file in the test's own temporary directory (not created yet)."""
    return f"sqlite:///{tmp_path / 'nas.db'}"


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the shared server, dropped on exit (skips when none answers).

    Every engine that connects to it meanwhile is disposed before the drop, so pooled
    connections of the code under test do not linger on the shared server.
    """
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine, make_url

    admin_url = postgres_admin_url()
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                                 connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:  # no server, no driver, bad credentials: all "no PostgreSQL here"
        pytest.skip(f"no PostgreSQL server answers at {make_url(admin_url).render_as_string(hide_password=True)} "
                    f"(set {POSTGRES_ENV_VAR}): {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")

    name = f"nas_test_{uuid.uuid4().hex}"
    url = make_url(admin_url).set(database=name)
    engines: list[Engine] = []

    def track(conn: sa.Connection) -> None:
        if conn.engine.url.database == name and conn.engine not in engines:
            engines.append(conn.engine)

    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    sa.event.listen(Engine, "engine_connect", track)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        sa.event.remove(Engine, "engine_connect", track)
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped after the test."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    """A database URL on each backend: a SQLite file, then a fresh PostgreSQL database."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def tiny_spec() -> dict[str, Any]:
    """A small nb201 job: accuracy (max) and latency on raspi4 (min), inline, 30 evaluations.

    A new dict per test: change it freely.
    """
    return {
        "name": "tiny",
        "space": {"name": "nb201"},
        "objectives": [
            {"name": "accuracy", "direction": "maximize"},
            {"name": "latency_ms", "device": "raspi4", "direction": "minimize"},
        ],
        "budget": {"evaluations": 30},
        "seed": 0,
        "execution": {"backend": "inline"},
    }


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory) -> Iterator[None]:
    # tests never see (or write) the user's proxy tables: a job behaves the same on a fresh
    # clone and on a machine where `nas proxies` has been run
    old = os.environ.get("NAS_CACHE_DIR")
    os.environ["NAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("nas-cache"))
    yield
    if old is None:
        os.environ.pop("NAS_CACHE_DIR", None)
    else:
        os.environ["NAS_CACHE_DIR"] = old


# -- a real `nas serve` (dashboard and agent tests) ------------------------------------
def _free_port() -> int:
    from nas.localcluster import free_port

    return free_port()


@pytest.fixture
def served(tmp_path):
    """``nas serve`` on a free loopback port with its own SQLite file: yields (base URL, admin token)."""
    import subprocess
    import sys
    import time

    port = _free_port()
    env = dict(os.environ, NAS_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "--db", f"sqlite:///{tmp_path / 'serve.db'}", "serve",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    token, lines = None, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and token is None:
        line = proc.stdout.readline()
        lines.append(line)
        if "admin token" in line:
            token = line.rsplit(" ", 1)[1].strip()
    assert token, "".join(lines)
    import threading
    import urllib.request

    # keep draining its output (runner logs): a full pipe would block the server
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", token
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()



"""docker-compose.yml and the Dockerfile, checked without Docker (it cannot run here): the
file parses, the topology is the one documented, every service's command exists in the CLI
with the flags it passes, and every environment variable it sets is one the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "spaces", "predictors", "latency", "api")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_topology(compose):
    s = compose["services"]
    assert set(s) == {"postgres", "prestart", "api", "runner", "ray-head", "ray-worker"}
    pg = s["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"]) and any("/var/lib/postgresql/data" in v
                                                                        for v in pg["volumes"])
    assert s["prestart"]["command"] == ["nas", "db", "upgrade"]
    assert s["prestart"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "runner"):
        assert s[name]["depends_on"]["prestart"]["condition"] == "service_completed_successfully"
    assert s["runner"]["deploy"]["replicas"] == 2
    assert "--head" in s["ray-head"]["command"] and any(a.startswith("--address=ray-head:") for a in
                                                        s["ray-worker"]["command"])
    # one image, built from the one Dockerfile, for everything but PostgreSQL
    built = {n for n, svc in s.items() if svc.get("build") == "."}
    assert built == set(s) - {"postgres"} and len({s[n]["image"] for n in built}) == 1


def test_dockerfile_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    for pkg in PACKAGES:
        assert re.search(rf"^COPY {pkg} \./{pkg}$", text, re.M), pkg
    # the image installs the releases CI tested: the torch of constraints.txt, CPU build
    (pin,) = re.findall(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert f"torch=={pin} --index-url https://download.pytorch.org/whl/cpu" in text
    assert "COPY pyproject.toml README.md constraints.txt ./" in text
    assert "pip install -c constraints.txt '.[all]'" in text


def test_every_command_exists_in_the_cli(compose):
    from nas.cli import build_parser

    for name, svc in compose["services"].items():
        cmd = svc.get("command")
        if not cmd:
            continue
        if cmd[0] == "nas":
            build_parser().parse_args(cmd[1:])  # exits (SystemExit) on an unknown command or flag
        elif cmd[0] == "ray":
            from ray.scripts.scripts import cli

            sub = cli.commands[cmd[1]]
            known = {opt for p in sub.params for opt in p.opts}
            for arg in cmd[2:]:
                assert arg.split("=")[0] in known, f"{name}: ray {cmd[1]} has no option {arg}"
        else:
            pytest.fail(f"{name}: unexpected command {cmd}")


def _read_by_project() -> set[str]:
    """Every variable name the project's code reads from the environment (directly or through
    a module constant such as ``ENV_VAR = "NAS_BENCHMARK_DATA"``)."""
    names: set[str] = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            names |= set(re.findall(r'(?:environ(?:\.get)?[\[(]|getenv\()\s*"([A-Z][A-Z0-9_]+)"', text))
            if "os.environ" in text:  # names handed to a reading helper, e.g. num("NAS_API_PORT", 8000)
                names |= set(re.findall(r'\w\(\s*"((?:NAS|RAY)_[A-Z0-9_]+)"', text))
            consts = dict(re.findall(r'^([A-Z_]*ENV_VAR)\s*=\s*"([A-Z][A-Z0-9_]+)"', text, re.M))
            names |= {v for k, v in consts.items() if re.search(rf"environ(?:\.get)?[\[(]\s*{k}\b", text)}
    return names


# variables read by Ray itself (documented: https://docs.ray.io/en/latest/ray-security/token-auth.html)
READ_BY_RAY = {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}


def test_every_environment_variable_is_read(compose):
    read = _read_by_project()
    assert {"NAS_DATABASE_URL", "RAY_ADDRESS", "NAS_API_HOST", "NAS_CACHE_DIR"} <= read  # the scan works
    for name, svc in compose["services"].items():
        if name == "postgres":
            continue  # the official image's own variables
        for var in svc.get("environment", {}):
            assert var in read or var in READ_BY_RAY, f"{name}: {var} is set but nothing reads it"


def test_ray_reads_its_token_variables():
    import ray

    pkg = Path(ray.__file__).parent
    hits = {v for v in READ_BY_RAY for p in (pkg / "_private").rglob("*.py") if v in p.read_text()}
    assert hits == READ_BY_RAY

"""DESIGN §2: the dependency direction between our packages.

    spaces  <-  predictors  <-  nas  <-  api
       ^            ^            |
       +---------  latency  <----+

Two checks per package:

* at run time: a fresh interpreter installs a meta-path finder that refuses the higher layers,
  then imports the package and every submodule (``pkgutil.walk_packages``). A refused import is
  recorded even when the package catches the ``ImportError`` (an optional import is still a
  violation), and reported with the module and line that asked for it;
* statically: every ``import`` statement in the package's source (also inside functions, which
  the run-time check cannot see) and every ``importlib.import_module("...")`` literal.

Packages that do not exist yet are skipped; empty or half-written ones are checked as they are.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("spaces", "predictors", "latency", "nas", "api")
# package -> our packages it must not import
BLOCKED = {
    "spaces": ("predictors", "latency", "nas", "api"),
    "predictors": ("latency", "nas", "api"),
    "latency": ("predictors", "nas", "api"),
    "nas": ("api",),
}
# `import spaces` must stay light: these load lazily, where they are needed
HEAVY = ("torch", "optuna", "ray", "sqlalchemy")
# module names never imported on their own (alembic scripts need alembic's runtime context);
# they are still covered by the static check
NOT_IMPORTABLE_PARTS = {"migrations"}

GUARD_SCRIPT = r'''
import importlib, importlib.abc, json, pkgutil, sys, traceback

root, package, blocked, skip_parts = sys.argv[1], sys.argv[2], set(sys.argv[3].split(",")), set(sys.argv[4].split(","))
sys.path.insert(0, root)
violations, errors, checked = [], [], []


def importer():
    """The module (and line) that asked for the import, skipping the import machinery."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_globals.get("__name__", "?")
        if not (name.startswith("importlib") or name == "pkgutil" or f.f_code.co_filename.startswith("<frozen")):
            return f"{name} ({f.f_code.co_filename}:{f.f_lineno})"
        f = f.f_back
    return "?"


class LayerGuard(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in blocked:
            who = importer()
            violations.append({"module": fullname, "importer": who})
            raise ImportError(f"layer violation: {who} imports {fullname!r}, which {package} may not import",
                              name=fullname)
        return None


sys.meta_path.insert(0, LayerGuard())


def record_error(name):
    errors.append({"module": name, "error": traceback.format_exc()})


def try_import(name):
    try:
        return importlib.import_module(name)
    except BaseException:
        record_error(name)
        return None


pkg = try_import(package)
if pkg is not None:
    checked.append(package)
    names = set()
    for info in pkgutil.walk_packages(pkg.__path__, package + ".", onerror=record_error):
        names.add(info.name)
    for name in sorted(names):
        if skip_parts & set(name.split(".")):
            continue
        if try_import(name) is not None:
            checked.append(name)
print("GUARD-RESULT " + json.dumps({"violations": violations, "errors": errors, "checked": checked}))
'''


def run_guard(package: str, blocked: tuple[str, ...]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", GUARD_SCRIPT, str(ROOT), package, ",".join(blocked), ",".join(NOT_IMPORTABLE_PARTS)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GUARD-RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"the import guard for {package} did not run (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1].removeprefix("GUARD-RESULT "))


def package_exists(package: str) -> bool:
    return (ROOT / package).is_dir() or (ROOT / f"{package}.py").is_file()


def source_files(package: str) -> list[Path]:
    base = ROOT / package
    return sorted(base.rglob("*.py")) if base.is_dir() else [ROOT / f"{package}.py"]


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Absolute names of every module ``path`` imports, with line numbers (relative imports resolved)."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    package_parts = list(rel[:-1])  # the package a relative import starts from (also for __init__.py)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.module or "", node.lineno))
            else:
                up = node.level - 1
                if up <= len(package_parts):
                    base = package_parts[:len(package_parts) - up]
                    out.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            out.append((node.args[0].value, node.lineno))
    return out


@pytest.mark.parametrize("package", list(BLOCKED))
def test_runtime_imports_respect_layers(package):
    if not package_exists(package):
        pytest.skip(f"package {package!r} does not exist yet")
    result = run_guard(package, BLOCKED[package])
    assert not result["violations"], (
        f"DESIGN §2: {package} may not import {', '.join(BLOCKED[package])}; found:\n"
        + "\n".join(f"  {v['importer']} imports {v['module']}" for v in result["violations"]))
    assert not result["errors"], (
        f"could not import every module of {package} (so its imports cannot be checked):\n"
        + "\n".join(f"--- {e['module']}\n{e['error']}" for e in result["errors"]))
    assert package in result["checked"]


@pytest.mark.parametrize("package", list(BLOCKED))
def test_static_imports_respect_layers(package):
    if not package_exists(package):
        pytest.skip(f"package {package!r} does not exist yet")
    bad = [f"  {path.relative_to(ROOT)}:{line}: import {name}"
           for path in source_files(package)
           for name, line in imported_modules(path)
           if name.partition(".")[0] in BLOCKED[package]]
    assert not bad, f"DESIGN §2: {package} may not import {', '.join(BLOCKED[package])}; found:\n" + "\n".join(bad)


def test_guard_catches_a_violation():
    """The guard is not vacuous: blocking numpy (which spaces imports) must be reported."""
    result = run_guard("spaces", ("numpy",))
    assert result["violations"], result
    assert any(v["module"] == "numpy" and v["importer"].startswith("spaces") for v in result["violations"])


def test_static_check_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    """The static parser resolves relative imports and sees imports inside functions."""
    pkg = tmp_path / "nas" / "storage"
    pkg.mkdir(parents=True)
    (pkg / "store.py").write_text(
        "from ..errors import E\n"
        "from . import models\n"
        "def f():\n"
        "    import api.routes\n"
        "    importlib.import_module('predictors.x')\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert sorted(imported_modules(pkg / "store.py")) == [
        ("api.routes", 4), ("nas.errors", 1), ("nas.storage", 2), ("predictors.x", 5)]


def test_import_spaces_is_light():
    code = ("import sys, json; import spaces; "
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not loaded, f"`import spaces` imported {', '.join(loaded)}; import them lazily where they are used"

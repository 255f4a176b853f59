"""Exact resume of the Optuna strategies on another Optuna release than the installed one.

The installed release (the newest, or the one constraints.txt pins) runs the whole suite; this
test installs the oldest release ``pyproject.toml`` allows into a throwaway directory that
shadows it, and runs the engine's exact-resume tests there (constrained nb201 jobs: Optuna 4
reads constraints through ``constraints_func``, Optuna 5 through ``Trial.set_constraint``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLDEST = "4.0.0"  # the lower bound of optuna in pyproject.toml


@pytest.mark.slow
@pytest.mark.parametrize("release", [OLDEST])
def test_exact_resume_on_another_optuna_release(release, tmp_path_factory):
    target = tmp_path_factory.mktemp(f"optuna-{release}")
    got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                          f"optuna=={release}"], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"pip could not install optuna=={release} (no package index?): {got.stderr[-300:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    version = subprocess.run([sys.executable, "-c", "import optuna; print(optuna.__version__)"], env=env,
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert version.stdout.strip() == release, version.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_engine.py",
         "-k", "resume_after_interrupt_matches and nb201 and (random or tpe or nsga2)"],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout, run.stdout[-2000:]

"""A regular (non-editable) install works: every subpackage and data file ships.

Regression (issue 12.1): ``pip install .`` left out ``rewardfilter.experiments.domains``
(a static package list), so ``rewardfilter run`` failed; ``make install`` uses ``-e``,
which hid it. The slow test builds the wheel, installs it with its core dependencies
only into a fresh virtual environment, and runs an experiment and its report.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setup_module():
    spec = importlib.util.spec_from_file_location("_rf_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    import setuptools

    real_setup, setuptools.setup = setuptools.setup, lambda **kw: None  # discover, do not build
    try:
        spec.loader.exec_module(module)
    finally:
        setuptools.setup = real_setup
    return module


def _source_packages() -> dict[str, Path]:
    """Installed name -> folder, for every folder holding Python files below the four roots."""
    roots = _setup_module().ROOTS
    found = {}
    for name, folder in roots.items():
        base = ROOT / folder
        for py in base.rglob("*.py"):
            rel = py.parent.relative_to(base)
            if any(part.startswith((".", "__")) for part in rel.parts):
                continue
            dotted = ".".join((name, *rel.parts))
            if dotted in roots and roots[dotted] != str(Path(folder, *rel.parts)):
                continue
            found[dotted] = py.parent
    return found


def test_discovery_finds_every_folder_that_holds_python_code():
    setup = _setup_module()
    missing = sorted(set(_source_packages()) - set(setup.PACKAGES))
    assert not missing, f"folders with Python files that would not be installed: {missing}"
    assert "rewardfilter.experiments.domains" in setup.PACKAGES
    for name, folder in setup.PACKAGE_DIR.items():
        assert (ROOT / folder / "__init__.py").exists(), name


def _study_files() -> list[str]:
    """The study configs and plans below experiments/study/, nested folders too."""
    base = ROOT / "experiments"
    return [
        str(p.relative_to(base))
        for p in sorted((base / "study").rglob("*"))
        if p.suffix in (".yaml", ".md") and (p.suffix == ".yaml" or p.parent == base / "study")
    ]


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    skip = shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*cache", "results"
    )
    shutil.copytree(ROOT, src, ignore=skip)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp / "dist").glob("rewardfilter-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_with_core_dependencies_and_runs_an_experiment(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    # every Python file and shipped data file of the tree is in the wheel
    for dotted, folder in _source_packages().items():
        for py in folder.glob("*.py"):
            assert f"{dotted.replace('.', '/')}/{py.name}" in names, py
    for md in ROOT.glob("adapters/**/SANDBOX.md"):
        assert "rewardfilter/adapters/" + str(md.relative_to(ROOT / "adapters")) in names
    for cfg in ("tiny.yaml", "demo.yaml", "control.yaml", "study/control.yaml", *_study_files()):
        assert f"rewardfilter/experiments/{cfg}" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, symlinks=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=300,
    )
    # core dependencies only: no extra came along
    probe = "import importlib.util as u; print([m for m in ('torch', 'gymnasium', 'ray') if u.find_spec(m)])"
    assert (
        subprocess.run([str(py), "-c", probe], capture_output=True, text=True).stdout.strip()
        == "[]"
    )

    cli = str(env_dir / "bin" / "rewardfilter")
    work = tmp_path / "work"  # away from the source tree, so only the installed package is seen
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [cli, "run", "tiny.yaml", "--out", "out", "--workers", "1", "--no-progress"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "0 failed" in run.stdout
    report = subprocess.run(
        [cli, "report", "out"], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr
    assert "# tiny" in report.stdout
    for name in ("summary.csv", "summary.md", "curves_step.png", "r2_vs_score.png"):
        assert (work / "out" / name).exists(), name

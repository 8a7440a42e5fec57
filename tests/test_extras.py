"""A missing extra gives one message naming it; a bogus Ray address fails fast, naming it.

Regression (issue 12.3): missing torch/gymnasium gave a raw ``No module named ...``
traceback, and an unreachable ``--address`` gave minutes of Ray's warnings.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rewardfilter.cli import main
from rewardfilter.experiments import run_experiment
from rewardfilter.extras import MissingExtraError


def _cli_without(
    modules: tuple[str, ...], argv: list[str], cwd: Path
) -> subprocess.CompletedProcess:
    """Run ``rewardfilter ARGV`` in a fresh interpreter in which ``modules`` cannot be imported."""
    code = (
        "import sys\n"
        f"for m in {modules!r}: sys.modules[m] = None  # import raises ModuleNotFoundError\n"
        "from rewardfilter.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_control_run_without_the_sb3_extra_names_it(tmp_path):
    cfg = {
        "name": "c",
        "domain": "control",
        "seeds": 1,
        "budget": {"steps": 64, "eval_every": 64, "eval_episodes": 1},
        "tasks": ["rewardfilter/Pendulum-v1"],
        "methods": ["PPO-M"],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = _cli_without(("gymnasium",), ["run", "c.yaml", "--out", "o", "--no-progress"], tmp_path)
    assert res.returncode == 2, res.stderr
    assert "pip install 'rewardfilter[sb3]'" in res.stderr and "gymnasium" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()  # nothing written before the check


def test_code_command_without_the_code_extra_names_it(tmp_path):
    res = _cli_without(("torch", "transformers"), ["code", "build-tiny", "out"], tmp_path)
    assert res.returncode == 2, res.stderr
    assert "pip install 'rewardfilter[code]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_ray_backend_without_ray_names_the_extra(tmp_path):
    res = _cli_without(
        ("ray",), ["run", "tiny.yaml", "--backend", "ray", "--out", "o", "--no-progress"], tmp_path
    )
    assert res.returncode == 2, res.stderr
    assert "pip install 'rewardfilter[ray]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_extra_error_is_an_import_error_naming_module_and_extra():
    exc = MissingExtraError("torch", "sb3", "The 'control' domain")
    assert isinstance(exc, ImportError) and exc.name == "torch"
    assert str(exc) == (
        "The 'control' domain needs the optional dependency 'torch', which is not installed: "
        "pip install 'rewardfilter[sb3]'"
    )


@pytest.mark.parametrize(
    "address", ["127.0.0.1:9", "ray://127.0.0.1:9", "no-such-host.invalid:6379"]
)
def test_bogus_ray_address_fails_within_seconds_naming_it(tmp_path, address):
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=address.replace(".", r"\.")):
        run_experiment("tiny.yaml", backend="ray", address=address, out=str(tmp_path / "o"))
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "o").exists()


def test_malformed_ray_address_is_refused_by_the_cli(tmp_path, capsys):
    code = main(
        ["run", "tiny.yaml", "--backend", "ray", "--address", "bogus", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert "'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("package", "hidden"),
    [
        ("rewardfilter.envs", "gymnasium"),
        ("rewardfilter.adapters.sb3", "stable_baselines3"),
        ("rewardfilter.adapters.sb3", "gymnasium"),
    ],
)
def test_importing_a_package_without_its_extra_names_the_extra(package, hidden):
    code = (
        f"import sys; sys.modules[{hidden!r}] = None\n"
        f"try:\n    import {package}\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MissingExtraError" in out.stdout and "pip install 'rewardfilter[sb3]'" in out.stdout
    assert repr(hidden) in out.stdout

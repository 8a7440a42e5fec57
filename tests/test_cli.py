"""The `rewardfilter` command and the promise that `import rewardfilter` stays light."""

import subprocess
import sys

import rewardfilter
from rewardfilter.cli import main


def test_version_and_help(capsys):
    for argv in (["--version"], ["--help"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert f"rewardfilter {rewardfilter.__version__}" in out
    assert "demo-core" in out


def test_demo_core_prints_the_ranking(capsys):
    assert main(["demo-core", "--groups", "300", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "Filtered R²" in out and "adaptive chose" in out


def test_import_is_light():
    code = (
        "import sys, rewardfilter as rf; rf.make_filter('br');"
        "heavy = [m for m in ('torch', 'gymnasium', 'stable_baselines3', 'transformers', 'ray', 'sklearn')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"

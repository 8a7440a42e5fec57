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


def _subcommand_paths(parser, prefix=()):
    """Every command path of an argparse tree: (), ('run',), ('code', 'sample'), ..."""
    import argparse

    yield prefix
    for action in parser._actions:  # argparse offers no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommand_paths(sub, (*prefix, name))


def test_help_of_every_command_and_subcommand(capsys):
    """Regression (issue 12.2): `rewardfilter report --help` crashed on the '%' in '95% CIs'."""
    from rewardfilter.cli import build_parser

    paths = list(_subcommand_paths(build_parser()))
    names = {" ".join(p) for p in paths}
    assert {"run", "report", "demo-core", "code"} <= names
    assert any(p[:1] == ("code",) and len(p) == 2 for p in paths)  # the code subcommands too
    for path in paths:
        try:
            main([*path, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, path
        out = capsys.readouterr().out
        assert "usage: rewardfilter" in out, path

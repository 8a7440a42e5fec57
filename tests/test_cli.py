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


def test_run_dataclass_cli_parses_one_positional_and_flags_and_reports_bad_input(capsys):
    import dataclasses

    import pytest

    from rewardfilter.io import run_dataclass_cli

    @dataclasses.dataclass
    class Cfg:
        paths: list[str] = dataclasses.field(metadata={"help": "Input folders (100% of them)."})
        n: int = dataclasses.field(default=3, metadata={"help": "How many."})

    def run(cfg):
        if cfg.n < 0:
            raise ValueError("n must be >= 0")
        return cfg

    kw = dict(
        module="pkg.tool", doc="Tool.\n\nMore.", positional="paths", metavar="PATH", nargs="+"
    )
    assert run_dataclass_cli(Cfg, run, ["a", "b", "--n", "5"], **kw) == (Cfg(["a", "b"], 5), 0)
    assert run_dataclass_cli(Cfg, run, ["a"], **kw) == (Cfg(["a"], 3), 0)
    assert run_dataclass_cli(Cfg, run, ["a", "--n", "-1"], **kw) == (None, 2)
    assert "error: n must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_dataclass_cli(Cfg, run, ["--help"], **kw)
    out = capsys.readouterr().out
    assert "python -m pkg.tool" in out and "PATH" in out and "100% of them" in out
    assert "(default: 3)" in out and "More." not in out
    with pytest.raises(SystemExit):
        run_dataclass_cli(Cfg, run, [], **kw)  # the positional is required

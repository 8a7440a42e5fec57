"""The ``rewardfilter`` command.

Subcommands live beside the code they drive; each module listed in
``SUBCOMMAND_MODULES`` exposes ``add_subcommands(subparsers)`` and imports its
heavy dependencies (gymnasium, torch, transformers) only inside the functions
that run, so ``rewardfilter --help`` and ``import rewardfilter`` stay light.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rewardfilter import __version__
from rewardfilter.extras import from_import_error

SUBCOMMAND_MODULES = (
    "rewardfilter.demo",
    "rewardfilter.experiments.cli",
    "rewardfilter.experiments.rliable_report",
    "rewardfilter.adapters.code.cli",
)

#: command -> the extra its heavy dependencies come from (torch is in both [sb3] and [code])
_EXTRA_OF = {"code": "code"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rewardfilter",
        description="Reinforcement learning when the reward cannot be trusted: policy filtration (PF-PPO) for any domain.",
    )
    parser.add_argument("--version", action="version", version=f"rewardfilter {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: say so
                raise
            continue
        module.add_subcommands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # `code` subcommands import their config classes here
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except ImportError as exc:  # a missing extra: say which one to install, not a traceback
        command = next((a for a in argv if not a.startswith("-")), "")
        missing = from_import_error(exc, f"'rewardfilter {command}'", _EXTRA_OF.get(command))
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

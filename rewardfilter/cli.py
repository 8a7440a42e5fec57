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

SUBCOMMAND_MODULES = (
    "rewardfilter.demo",
    "rewardfilter.experiments.cli",
    "rewardfilter.adapters.code.cli",
)


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

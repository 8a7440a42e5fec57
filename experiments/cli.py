"""``rewardfilter run`` and ``rewardfilter report``: the comparative experiments.

Options are built from the fields of :class:`~rewardfilter.experiments.runner.RunOptions`
and :class:`~rewardfilter.experiments.report.ReportOptions`, so their help text
has one source. Heavy imports (the domains, Ray, matplotlib) happen only in the
functions that run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from rewardfilter.io import add_dataclass_arguments


def cmd_run(args: argparse.Namespace) -> int:
    from rewardfilter.experiments.config import ConfigError, load_config
    from rewardfilter.experiments.runner import RunnerError, RunOptions, run_experiment

    try:
        config = load_config(args.config)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions)})
    try:
        summary = run_experiment(config, options)
    except (ConnectionError, RunnerError, ValueError) as exc:  # --address, OUT, an option
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{summary.total} runs in {summary.out}: {summary.skipped} already finished, "
        f"{len(summary.completed)} completed now, {len(summary.failed)} failed."
    )
    for run_id, reason in summary.failed.items():
        print(f"  FAILED {run_id}: {reason}", file=sys.stderr)
    return 0 if summary.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from rewardfilter.experiments.report import ReportOptions, make_report

    options = ReportOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(ReportOptions)}
    )
    try:
        report = make_report(options)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.markdown)
    if report.files:
        print("\nwrote " + ", ".join(str(p) for p in report.files))
    else:
        print(
            f"\n{args.dir} is read-only: nothing written "
            "(--out DIR writes the tables and plots elsewhere)."
        )
    return 0


def add_subcommands(subparsers) -> None:
    from rewardfilter.experiments import config as cfg
    from rewardfilter.experiments.report import ReportOptions
    from rewardfilter.experiments.runner import RunOptions

    # the config keys, from the dataclasses' own help text (one source of truth)
    classes = (
        cfg.ExperimentConfig,
        cfg.TaskConfig,
        cfg.NoiseConfig,
        cfg.MethodConfig,
        cfg.BudgetConfig,
        cfg.ReportConfig,
    )
    epilog = "CONFIG keys:\n" + "\n".join(cfg.describe(c) for c in classes)
    epilog += "\n\nStandard method aliases: " + ", ".join(cfg.STANDARD_METHODS) + "."
    run = subparsers.add_parser(
        "run",
        help="Run a comparative experiment from a YAML config (resumable).",
        description="Expand CONFIG into runs (tasks x noise x methods x seeds) and execute the "
        "unfinished ones on local processes or Ray. Re-running skips finished runs.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "config", help="YAML config file (or the name of a shipped one, e.g. demo.yaml)."
    )
    add_dataclass_arguments(run, RunOptions)
    run.set_defaults(func=cmd_run)

    report = subparsers.add_parser(
        "report",
        help="Summarise an experiment folder: tables (CSV, Markdown) and plots (PNG).",
    )
    report.add_argument("dir", help="Output folder of 'rewardfilter run'.")
    add_dataclass_arguments(report, ReportOptions, skip=("dir",))
    report.set_defaults(func=cmd_report)

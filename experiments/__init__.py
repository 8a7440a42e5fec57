"""Comparative experiments: which filter helps where, with honest numbers.

* :mod:`~rewardfilter.experiments.schema`: the config dataclasses (tasks, noise
  models, methods, seeds, budgets, hyperparameters), each field with its help;
* :mod:`~rewardfilter.experiments.config`: reading a YAML config and validating
  it in one place (:mod:`~rewardfilter.experiments.domains.checks`: what each
  domain accepts);
* :mod:`~rewardfilter.experiments.runner`: the resumable runner on a local
  process pool or Ray (``rewardfilter run CONFIG``);
* :mod:`~rewardfilter.experiments.report`: the paper-style table and plots
  (``rewardfilter report DIR``), built from
  :mod:`~rewardfilter.experiments.statistics` (bootstrap CIs),
  :mod:`~rewardfilter.experiments.tables` (CSV, Markdown) and
  :mod:`~rewardfilter.experiments.plots` (PNG);
* :mod:`~rewardfilter.experiments.domains`: the registry of domains (control,
  code, and a fast built-in bandit), each a function ``run_fn(run, log)``.

Shipped configs (``demo.yaml``, ``control.yaml``, ``tiny.yaml``) live beside
this file; ``rewardfilter run demo.yaml`` finds them by name.

Python use::

    from rewardfilter.experiments import load_config, run_experiment, make_report

    summary = run_experiment("demo.yaml", out="runs/demo", workers=2)
    print(make_report(dir="runs/demo").markdown)
"""

from rewardfilter.experiments import config as _config
from rewardfilter.experiments.config import *  # noqa: F403  (the config's public names)
from rewardfilter.experiments.report import ReportOptions, make_report
from rewardfilter.experiments.runner import RunOptions, RunSummary, finished_runs, run_experiment
from rewardfilter.experiments.statistics import bootstrap_ci, normalised_ci

__all__ = [
    *_config.__all__,
    "ReportOptions",
    "RunOptions",
    "RunSummary",
    "bootstrap_ci",
    "finished_runs",
    "make_report",
    "normalised_ci",
    "run_experiment",
]

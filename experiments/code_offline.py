"""The reward model's reliability before training: the paper's offline analysis for code.

Issue 17 step 2 and ``experiments/study/PLAN_code_v2.md`` section 4. Two commands::

    rewardfilter code train-rm --policy START --out RM --config experiments/study/code_v2/build_s.yaml
    python -m rewardfilter.experiments.code_offline RM --out DIR --n 5 8

The first (the one way to sample, label and train a reward model) samples the
start policy on training prompts and on held-out prompts, labels every response
by its unit tests in the sandbox, trains the Bradley-Terry ensemble on the
training prompts' samples and keeps the held-out ones as ``RM/heldout_data.jsonl``:
the **common pool** (G held-out prompts x their samples). The second scores the
pool with the ensemble and, for each N of ``--n`` (the first N samples of every
prompt; 0 = all), writes ``DIR/offline.json``, ``DIR/offline.md`` and
``DIR/reliability_N<N>.png``:

* the reward model, filter-independent: pairwise accuracy (pass vs fail, same
  prompt), within-group Spearman, P(top-1 correct) against the true score and
  against pass/fail (with the chance level of a blind pick), P(bottom-1
  correct), the rank curve (pass rate and mean score of the rank-1, ..., rank-N
  samples), and the reliability curve (:func:`rewardfilter.reliability_curve`,
  quantile bins) on the raw rewards and on rewards centred per prompt (what a
  filter sees);
* ``high_minus_mid_std`` (PLAN H5): the true score's std in the top two reward
  bins minus its mean std over bins 4-7 (of 10, counted from 1), with a
  bootstrap CI over prompts; below 0 means "more reliable where the reward is
  high", as the paper saw;
* per filter, :func:`rewardfilter.pool_reliability` (filtered R², within-group
  Spearman, kept fraction, kept score) with bootstrap CIs over prompts, and
  :func:`rewardfilter.rank_filters`' order (the paper's offline choice).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.io import atomic_write_json, atomic_write_text, run_dataclass_cli

__all__ = ["OfflineConfig", "analyse", "default_filters", "first_n", "main", "markdown"]


@dataclass
class OfflineConfig:
    """What ``python -m rewardfilter.experiments.code_offline`` analyses and writes."""

    reward_model: str = field(
        metadata={"help": "The ensemble directory written by `rewardfilter code train-rm`."}
    )
    out: str = field(default="", metadata={"help": "Output folder (required)."})
    pool: str | None = field(
        default=None,
        metadata={
            "help": "Labelled responses (RewardData JSONL); default: REWARD_MODEL/heldout_data.jsonl."
        },
    )
    n: list[int] = field(
        default_factory=lambda: [5],
        metadata={"help": "Samples per prompt analysed: the first N of each prompt (0: all)."},
    )
    filters: list[str] | None = field(
        default=None, metadata={"help": "Filter specs (default: default_filters(N))."}
    )
    draws: int = field(default=50, metadata={"help": "Draws of a random filter's choices."})
    resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples of prompts."})
    bins: int = field(default=10, metadata={"help": "Quantile bins of the reliability curve."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0: torch's default)."})
    seed: int = field(default=0, metadata={"help": "Seed of the draws and the bootstrap."})
    device: str = field(default="cpu", metadata={"help": "Where the ensemble scores."})
    plot: bool = field(default=True, metadata={"help": "Write the reliability-curve figure."})

    def __post_init__(self) -> None:
        from rewardfilter.validation import check_scalar

        if not self.out:
            raise ValueError("The 'out' parameter of OfflineConfig is required (--out DIR).")
        for k in self.n:
            check_scalar(k, "n", "OfflineConfig", "int", min_val=0)
        check_scalar(self.draws, "draws", "OfflineConfig", "int", min_val=1)
        check_scalar(self.resamples, "resamples", "OfflineConfig", "int", min_val=0)
        check_scalar(self.bins, "bins", "OfflineConfig", "int", min_val=2)


def default_filters(n: int, ensemble: bool = True) -> list[str]:
    """The plan's filters for groups of ``n``: none, random:2, BoN, BR, BW, BR's reweight version
    ``rank:0.4,0.1,...``, uncertainty:0.4 (with an ensemble only) and adaptive (fitted on the pool)."""
    specs = [
        "none",
        "random:2",
        "bon",
        "br",
        "bw",
        "rank:" + ",".join(["0.4"] + ["0.1"] * (n - 1)),
        "uncertainty:0.4",
        "adaptive",
    ]
    return specs if ensemble else [f for f in specs if not f.startswith("uncertainty")]


def first_n(groups: np.ndarray, n: int) -> np.ndarray:
    """The rows of the first ``n`` responses of every prompt (``groups``: prompt per row), in
    file order; 0 keeps all."""
    groups = np.asarray(groups)
    if n == 0:
        return np.arange(groups.shape[0])
    counts = np.bincount(groups)
    if counts.min() < n:
        raise ValueError(
            f"The 'n' parameter asks for {n} responses per prompt, but a prompt of the pool has "
            f"only {int(counts.min())}."
        )
    order = np.argsort(groups, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.shape[0]) - (np.cumsum(counts) - counts)[groups[order]]
    return np.flatnonzero(position < n)


def _rank_curve(rewards, scores, passed, codes, rng) -> list[dict[str, float]]:
    """Pass rate and mean score of the samples at each reward rank (1 = highest), ties at random."""
    from rewardfilter.grouping import rank_within_groups

    ranking = rank_within_groups(rewards, codes, rng)
    rank = ranking.scatter(ranking.rank)
    return [
        {
            "rank": int(k + 1),
            "pass_rate": float(passed[rank == k].mean()),
            "score_mean": float(scores[rank == k].mean()),
        }
        for k in range(int(rank.max()) + 1)
    ]


def _centred(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return x - (np.bincount(codes, x) / np.bincount(codes))[codes]


def high_minus_mid_std(rewards: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """The true score's std in the top two quantile bins of the reward minus its mean std over
    the middle bins (4-7 of 10, counted from 1; ``[0.3 bins, 0.7 bins)`` in general)."""
    import rewardfilter as rf

    curve = rf.reliability_curve(rewards, scores, bins=bins, strategy="quantile")
    std = curve.std[curve.count > 0]
    if std.shape[0] < 4:
        return math.nan
    k = std.shape[0]
    return float(np.mean(std[-2:]) - np.mean(std[int(0.3 * k) : int(0.7 * k)]))


def _prompt_bootstrap(stat, arrays, codes, resamples, rng, level=0.95) -> tuple[float, float]:
    """Percentile CI of ``stat(*arrays)`` over resamples of whole prompts."""
    if not resamples:
        return (math.nan, math.nan)
    rows = [np.flatnonzero(codes == g) for g in range(int(codes.max()) + 1)]
    values = []
    for _ in range(resamples):
        idx = np.concatenate([rows[g] for g in rng.integers(0, len(rows), len(rows))])
        values.append(stat(*(a[idx] for a in arrays)))
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return (math.nan, math.nan)
    a = (1 - level) / 2
    return (float(np.quantile(v, a)), float(np.quantile(v, 1 - a)))


def analyse(data: Any, rewards: np.ndarray, members: np.ndarray | None, cfg: OfflineConfig, n: int):
    """Every statistic of the module docstring for one pool (a RewardData) and its rewards."""
    import rewardfilter as rf
    from rewardfilter.adapters.code.reward import pairwise_accuracy

    rng = np.random.default_rng(cfg.seed)
    codes = data.groups
    s, passed = data.scores, data.passed.astype(float)
    sizes = np.bincount(codes)
    filters = cfg.filters or default_filters(int(sizes.max()), members is not None)
    curves = {
        name: rf.reliability_curve(r, s, bins=cfg.bins, strategy="quantile").to_rows()
        for name, r in (("raw", rewards), ("centred", _centred(rewards, codes)))
    }
    h5 = high_minus_mid_std(rewards, s, cfg.bins)
    h5_ci = _prompt_bootstrap(
        lambda r, x: high_minus_mid_std(r, x, cfg.bins), (rewards, s), codes, cfg.resamples, rng
    )
    records = rf.pool_reliability(
        rewards,
        s,
        codes,
        filters,
        ensemble=members,
        rng=rng,
        draws=cfg.draws,
        resamples=cfg.resamples,
    )
    # the paper's rule (rf.rank_filters) on the same numbers: filtered R², best first, NaN last
    fixed = [r for r in records if "chosen" not in r]
    order = sorted(
        fixed, key=lambda r: (math.isnan(r["filtered_r2"]), -np.nan_to_num(r["filtered_r2"]))
    )
    zeros = np.zeros_like(rewards)
    return {
        "n": n,
        "prompts": int(len(sizes)),
        "responses": int(len(rewards)),
        "pass_rate": float(passed.mean()),
        "prompts_with_pass_and_fail": int(
            np.sum((np.bincount(codes, passed) > 0) & (np.bincount(codes, passed) < sizes))
        ),
        "reward_model": {
            "pairwise_accuracy": pairwise_accuracy(rewards, codes, s, data.passed),
            "within_group_spearman": rf.within_group_spearman(rewards, s, codes),
            "top1_correct": rf.top1_correct(rewards, s, codes),
            "top1_chance": rf.top1_correct(zeros, s, codes),
            "top1_pass": rf.top1_correct(rewards, passed, codes),
            "top1_pass_chance": rf.top1_correct(zeros, passed, codes),
            "bottom1_correct": rf.top1_correct(-rewards, -s, codes),
            "r2": rf.r2(rewards, s),
            "mean_member_std": None if members is None else float(rf.ensemble_std(members).mean()),
        },
        "rank_curve": _rank_curve(rewards, s, passed, codes, rng),
        "reliability_curve": curves,
        "high_minus_mid_std": h5,
        "high_minus_mid_std_ci": h5_ci,
        "filters": records,
        "offline_choice": [r["filter"] for r in order],
    }


def _f(x: Any, digits: int = 3) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(rec: dict, key: str) -> str:
    lo, hi = rec.get(f"{key}_ci", (math.nan, math.nan))
    return f"{_f(rec[key])} [{_f(lo)}, {_f(hi)}]"


def markdown(result: dict[str, Any]) -> str:
    """The per-N tables of :func:`analyse`'s results (``offline.json``) as Markdown."""
    lines = [f"# Offline reliability of `{result['reward_model_path']}`", ""]
    lines.append(
        f"Pool: `{result['pool']}`. CIs: {result['resamples']} bootstrap resamples of prompts."
    )
    for a in result["analyses"]:
        rm = a["reward_model"]
        lines += [
            "",
            f"## N = {a['n'] or 'all'} ({a['prompts']} prompts, {a['responses']} responses, "
            f"pass rate {_f(a['pass_rate'])}, {a['prompts_with_pass_and_fail']} prompts with a pass and a fail)",
            "",
            f"Pairwise accuracy {_f(rm['pairwise_accuracy'])}; within-group Spearman "
            f"{_f(rm['within_group_spearman'])}; P(top-1 correct) {_f(rm['top1_correct'])} "
            f"(chance {_f(rm['top1_chance'])}); top-1 passes {_f(rm['top1_pass'])} "
            f"(chance {_f(rm['top1_pass_chance'])}); P(bottom-1 correct) {_f(rm['bottom1_correct'])}; "
            f"R² {_f(rm['r2'])}.",
            "",
            "Rank curve (pass rate by reward rank): "
            + ", ".join(f"{c['rank']}: {_f(c['pass_rate'], 2)}" for c in a["rank_curve"]),
            "",
            f"Std of the score in the top two reward bins minus bins 4-7: "
            f"{_f(a['high_minus_mid_std'])} [{_f(a['high_minus_mid_std_ci'][0])}, "
            f"{_f(a['high_minus_mid_std_ci'][1])}] (below 0: more reliable where the reward is high).",
            "",
            "| filter | filtered R² | within-group Spearman | kept fraction | kept score mean |",
            "|---|---|---|---|---|",
        ]
        for rec in a["filters"]:
            name = rec["filter"] + (f" -> {rec['chosen']}" if rec.get("chosen") else "")
            lines.append(
                f"| {name} | {_ci(rec, 'filtered_r2')} | {_ci(rec, 'within_group_spearman')} | "
                f"{_f(rec['kept_fraction'], 2)} | {_ci(rec, 'kept_score_mean')} |"
            )
        lines += ["", "Offline choice (filtered R², best first): " + ", ".join(a["offline_choice"])]
        lines += ["", "| reward bin | count | score mean | score std |", "|---|---|---|---|"]
        for b in a["reliability_curve"]["raw"]:
            lines.append(
                f"| [{_f(b['low'])}, {_f(b['high'])}] | {b['count']} | {_f(b['mean'])} | {_f(b['std'])} |"
            )
    return "\n".join(lines) + "\n"


def _plot(analysis: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, name in zip(axes, ("raw", "centred"), strict=True):
        rows = [b for b in analysis["reliability_curve"][name] if b["count"]]
        x = [(b["low"] + b["high"]) / 2 for b in rows]
        ax.errorbar(x, [b["mean"] for b in rows], yerr=[b["std"] for b in rows], marker="o")
        ax.set_xlabel(f"reward ({name}), quantile-bin centre")
        ax.set_ylabel("true score: mean ± std")
        ax.grid(alpha=0.3)
    fig.suptitle(f"N = {analysis['n']}: reliability curve", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(cfg: OfflineConfig) -> dict[str, Any]:
    """Score the pool with the ensemble, analyse it for every N, write JSON, Markdown and figures."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from rewardfilter.adapters.code.reward import RewardData, RewardEnsemble
    from rewardfilter.adapters.code.reward.model import predict_rewards

    pool = Path(cfg.pool or Path(cfg.reward_model) / "heldout_data.jsonl")
    if not pool.is_file():
        raise FileNotFoundError(f"The pool {str(pool)!r} does not exist (see --pool).")
    ens = RewardEnsemble.from_pretrained(cfg.reward_model, device=cfg.device)
    data = RewardData.load_jsonl(pool)
    if not len(data):
        raise ValueError(f"The pool {str(pool)!r} holds no response.")
    rewards, members = predict_rewards(ens, data.prompts, data.completions)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    analyses = []
    for n in cfg.n:
        rows = first_n(data.groups, n)
        m = None if members is None else members[:, rows]
        analyses.append(analyse(data.subset(rows), rewards[rows], m, cfg, n))
    result = {
        "reward_model_path": str(cfg.reward_model),
        "pool": str(pool),
        "resamples": cfg.resamples,
        "config": dataclasses.asdict(cfg),
        "analyses": analyses,
    }
    atomic_write_json(out / "offline.json", result)
    atomic_write_text(out / "offline.md", markdown(result))
    if cfg.plot:
        for a in analyses:
            _plot(a, out / f"reliability_N{a['n']}.png")
    return result


def main(argv: list[str] | None = None) -> int:
    result, status = run_dataclass_cli(
        OfflineConfig,
        run,
        argv,
        module="rewardfilter.experiments.code_offline",
        doc=__doc__,
        positional="reward_model",
        metavar="REWARD_MODEL",
    )
    if status:
        return status
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``PFGRPOConfig``: TRL's ``GRPOConfig`` plus the four fields of policy filtration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

import rewardfilter as rf
from rewardfilter.validation import check_choice, param_error

FILTER_ADVANTAGES = ("all", "kept")


def config_error(name: str, expected: str, got: Any) -> ValueError:
    """The project's one error shape, naming the config field."""
    return param_error(name, "PFGRPOConfig", expected, got)


#: ``TrainingArguments`` of a short local run on CPU that saves nothing, reports to
#: no tracker and shows no progress bar: what the examples, benchmarks and tests
#: share (``GRPOConfig(..., **LOCAL_RUN)``).
LOCAL_RUN: dict[str, Any] = {
    "use_cpu": True,
    "report_to": "none",
    "save_strategy": "no",
    "disable_tqdm": True,
    "seed": 0,
}


@dataclass
class PFGRPOConfig(GRPOConfig):
    """Configuration of :class:`PFGRPOTrainer`: every ``GRPOConfig`` field, plus filtration.

    The four new fields are validated here, when the config is built; the
    names in ``ensemble_reward_funcs`` are checked against the trainer's
    reward functions when the trainer is built.
    """

    filter: str = field(  # a Filter instance (e.g. a fitted one) is accepted too
        default="none",
        metadata={
            "help": "Which completions of each prompt's group train the policy: any rewardfilter spec "
            f"({rf.accepted_specs()}). "
            "The filter ranks the completions of a group by the reward TRL computes (the weighted sum of "
            "the reward functions); a completion with weight 0 leaves the loss, a non-binary weight "
            "('rank:...') scales the completion's advantage."
        },
    )
    filter_advantages: str = field(
        default="all",
        metadata={
            "help": "'all': advantages are TRL's, normalised over the whole group, and filtered completions "
            "are then removed (the authors' resampling path). 'kept': each group's advantages are recomputed "
            "from the mean (and, per scale_rewards, std) of its kept completions only (so with 'bon', one kept "
            "completion per group, every advantage is 0)."
        },
    )
    ensemble_reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Names of the reward functions (as TRL names them: the function's __name__, or the reward "
            "model's name) that are the members of one reward-model ensemble. Their spread across members "
            "feeds 'uncertainty:Q' and is logged; unless reward_weights is given, each member gets weight "
            "1/K so the reward TRL ranks and normalises holds the members' mean."
        },
    )
    true_score_func: str | None = field(
        default=None,
        metadata={
            "help": "Optional true score (e.g. unit tests): a function with the reward-function signature, or "
            "its import path 'module:function'. Used only to log the filtered R² and Spearman correlation "
            "between reward and true score, and to fit 'adaptive'; never in the loss."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            flt = rf.make_filter(self.filter)
        except ValueError as exc:
            raise ValueError(f"The 'filter' parameter of PFGRPOConfig is invalid: {exc}") from None
        check_choice(self.filter_advantages, "filter_advantages", "PFGRPOConfig", FILTER_ADVANTAGES)
        if (
            self.filter_advantages == "kept"
            and self.multi_objective_aggregation != "sum_then_normalize"
        ):
            raise config_error(
                "filter_advantages",
                "'all' when multi_objective_aggregation is 'normalize_then_sum'",
                self.filter_advantages,
            )
        for name in ("num_generations", "num_generations_eval"):
            size = getattr(self, name)
            if size is None:
                continue
            try:
                flt.check_group_size(size)
            except ValueError as exc:
                raise ValueError(
                    f"The {name!r} parameter of PFGRPOConfig is too small for filter {self.filter!r}: {exc}"
                ) from None
        if self.ensemble_reward_funcs is not None:
            names = self.ensemble_reward_funcs
            if (
                isinstance(names, str)
                or not isinstance(names, (list, tuple))
                or not names
                or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)
            ):
                raise config_error(
                    "ensemble_reward_funcs",
                    "a non-empty list of distinct reward-function names",
                    names,
                )
            self.ensemble_reward_funcs = list(names)
        if getattr(flt, "needs_ensemble", False) and not self.ensemble_reward_funcs:
            raise config_error(
                "ensemble_reward_funcs",
                f"the names of the reward-model ensemble's members for filter {self.filter!r}",
                self.ensemble_reward_funcs,
            )
        score = self.true_score_func
        if score is not None and not callable(score):
            if not isinstance(score, str) or ":" not in score:
                raise config_error(
                    "true_score_func", "a callable or an import path 'module:function'", score
                )
        if _requires_fit(flt) and score is None:
            raise config_error(
                "true_score_func",
                f"a true-score function: filter {self.filter!r} is fitted on true scores",
                score,
            )

    def to_dict(self) -> dict[str, Any]:
        """As ``GRPOConfig.to_dict``, with a callable ``true_score_func`` written as its name."""
        out = super().to_dict()
        if callable(self.true_score_func):
            out["true_score_func"] = _callable_name(self.true_score_func)
        if isinstance(self.filter, rf.Filter):
            out["filter"] = self.filter.spec
        return out


def _requires_fit(flt: rf.Filter) -> bool:
    """Whether ``flt`` must be fitted on labelled data before it can weigh samples."""
    return bool(flt.requires_fit)


def _callable_name(func: Callable) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}:{getattr(func, '__qualname__', type(func).__name__)}"

"""``PFGRPOTrainer``: TRL's ``GRPOTrainer`` with PF-PPO's policy filtration.

One training iteration, in the order it happens:

1. TRL generates ``num_generations`` completions per prompt (unchanged: vLLM,
   ``rollout_func`` and tools work as in TRL);
2. TRL computes the rewards, gathered across processes
   (:meth:`_calculate_rewards`, where this class also reads the true score);
3. the rewardfilter filter weighs every completion within its prompt's group,
   on the gathered batch, so every process sees the same weights
   (:meth:`_generate_and_score_completions`);
4. advantages are TRL's (``filter_advantages="all"``) or recomputed over the
   kept completions (``"kept"``); a non-binary weight scales the advantage;
5. the loss (:meth:`compute_loss`) is TRL's loss on the kept completions only:
   completions with weight 0 are taken out of the batch before the forward
   pass, and the loss normaliser counts only kept completions (or kept tokens).
"""

from __future__ import annotations

import importlib
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather
from trl import GRPOTrainer

import rewardfilter as rf

from .config import PFGRPOConfig, _requires_fit, config_error
from .filtering import (
    can_select_rows,
    finite_for_ranking,
    kept_advantages,
    ranking_reward,
    select_rows,
)

#: TRL loss types whose normaliser counts completions (rows) of the local batch.
ROW_NORMALISED_LOSSES = ("grpo", "sapo", "dr_grpo", "luspo")

#: Generation batches an ``adaptive`` filter is refitted on (the current one included).
ADAPTIVE_WINDOW = 8

#: the fields of the core's statistics record (rewardfilter.FilterStats) logged, and their keys
_LOGGED_STATS = {
    "kept_fraction": "filter/kept_fraction",
    "groups_dropped": "filter/groups_dropped",
    "ensemble_std_mean": "filter/ensemble_spread",
    "score_mean": "filter/true_score",
    "r2": "filter/r2_all",
    "filtered_r2": "filter/r2_kept",
    "filtered_spearman": "filter/spearman_kept",
}


class PFGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that trains only on the completions a rewardfilter filter keeps.

    Takes exactly ``GRPOTrainer``'s arguments; ``args`` must be a
    :class:`PFGRPOConfig` (its ``filter``, ``filter_advantages``,
    ``ensemble_reward_funcs`` and ``true_score_func`` fields drive the
    filtration). With ``filter="none"`` a step is exactly ``GRPOTrainer``'s.

    Metrics added to TRL's logs (so ``report_to`` receives them), each computed
    on the batch gathered from every process:

    * ``filter/kept_fraction``: completions with weight > 0 / all completions;
    * ``filter/groups_dropped``: prompts none of whose completions was kept;
    * ``filter/ensemble_spread``: mean std across the ensemble's members;
    * with ``true_score_func``: ``filter/true_score`` (mean), and, when the
      true scores vary, ``filter/r2_all``, ``filter/r2_kept`` (R² over the
      kept completions, weighted), ``filter/spearman_all``,
      ``filter/spearman_kept``;
    * with ``adaptive``: ``filter/adaptive_r2/<candidate>``.
    """

    _tag_names = ["trl", "grpo", "rewardfilter", "pf-grpo"]

    def __init__(
        self, model: Any, reward_funcs: Any, args: PFGRPOConfig | None = None, *rest, **kwargs
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = PFGRPOConfig(f"{name.split('/')[-1]}-PFGRPO")
        if not isinstance(args, PFGRPOConfig):
            raise TypeError(
                f"The 'args' parameter of PFGRPOTrainer must be a PFGRPOConfig; got {type(args).__name__}. "
                "PFGRPOConfig takes every GRPOConfig field plus filter, filter_advantages, "
                "ensemble_reward_funcs and true_score_func."
            )
        super().__init__(model, reward_funcs, args, *rest, **kwargs)
        self.reward_filter = rf.make_filter(args.filter)
        self._pf_members = self._ensemble_members(args)
        if self._pf_members and args.reward_weights is None:
            # the members count as one reward: their mean
            weights = self.reward_weights.clone()
            weights[self._pf_members] = 1.0 / len(self._pf_members)
            self.reward_weights = weights
        self._pf_true_score = _resolve_callable(args.true_score_func)
        self._pf_calls = 0
        self._pf_rewards_per_func: torch.Tensor | None = None
        self._pf_scores: torch.Tensor | None = None
        self._pf_history: deque = deque(maxlen=ADAPTIVE_WINDOW)

    def _ensemble_members(self, args: PFGRPOConfig) -> list[int]:
        names = args.ensemble_reward_funcs or []
        unknown = [n for n in names if n not in self.reward_func_names]
        if unknown:
            raise config_error(
                "ensemble_reward_funcs",
                f"names among the trainer's reward functions {self.reward_func_names}",
                names,
            )
        return [self.reward_func_names.index(n) for n in names]

    # -- 2. rewards (and the true score), gathered across processes ----------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._pf_rewards_per_func = rewards_per_func
        self._pf_scores = None
        if self._pf_true_score is not None:
            keys = [k for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")]
            kwargs = {k: [x[k] for x in inputs] for k in keys}
            scores = self._pf_true_score(
                prompts=prompts,
                completions=completions,
                completion_ids=completion_ids_list,
                trainer_state=self.state,
                **kwargs,
            )
            scores = [torch.nan if s is None else float(s) for s in scores]
            if len(scores) != len(prompts):
                raise ValueError(
                    f"The true_score_func returned {len(scores)} scores, but {len(prompts)} were expected "
                    "(one per prompt-completion pair)."
                )
            local = torch.tensor(scores, dtype=torch.float32, device=self.accelerator.device)
            self._pf_scores = gather(local)
        return rewards_per_func

    # -- 3-4. filter within groups, advantages -------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = ranking_reward(self._pf_rewards_per_func, self.reward_weights)
        weights = self._filter_weights(rewards, group_size, mode)  # global, same on every process
        keep = weights > 0

        local = slice(
            self.accelerator.process_index * len(inputs),
            (self.accelerator.process_index + 1) * len(inputs),
        )
        if self.args.filter_advantages == "kept":
            advantages = kept_advantages(rewards, keep, group_size, self.scale_rewards)[local]
        else:
            advantages = output["advantages"]
        local_weights = weights[local].to(advantages.dtype)
        output["advantages"] = advantages * local_weights
        output["pf_weight"] = local_weights

        loss_mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            loss_mask = loss_mask * output["tool_mask"]
        kept_tokens = (loss_mask.sum(dim=1) * (local_weights > 0)).sum()
        output["pf_kept_tokens"] = self.accelerator.gather(kept_tokens).sum()
        output["pf_kept_fraction"] = keep.float().mean()
        return output

    def _filter_weights(self, rewards: torch.Tensor, group_size: int, mode: str) -> torch.Tensor:
        """Weights of the gathered batch; logs the filter's metrics."""
        n = rewards.shape[0]
        groups = np.arange(n) // group_size
        r = finite_for_ranking(rewards.detach().cpu().numpy())
        ensemble = None
        if self._pf_members:
            members = self._pf_rewards_per_func[:, self._pf_members].T.detach().cpu().numpy()
            ensemble = _fill_nan_with_member_mean(members.astype(float))
        scores = None if self._pf_scores is None else self._pf_scores.detach().cpu().numpy()
        # one stream per call, identical on every process (same seed, same call count)
        rng = np.random.default_rng([int(self.args.seed), self._pf_calls])
        self._pf_calls += 1

        flt = self.reward_filter
        if _requires_fit(flt) and mode == "train":
            self._refit(flt, r, scores, groups, ensemble, rng, mode)
        if _requires_fit(flt) and not flt.is_fitted:
            weights = np.ones(n)  # nothing to choose with yet: keep everything
        else:
            weights = flt.weights(r, groups, rng=rng, ensemble=ensemble)

        record = rf.filter_stats(r, weights, groups, scores=scores, ensemble=ensemble)
        self._log_stats(self._metrics[mode], record, r, scores)
        return torch.as_tensor(weights, dtype=torch.float32, device=rewards.device)

    def _refit(self, flt, r, scores, groups, ensemble, rng, mode) -> None:
        """Refit an ``adaptive`` filter on the last ``ADAPTIVE_WINDOW`` generation batches."""
        ok = np.isfinite(scores)
        offset = 1 + max((int(h[2].max()) for h in self._pf_history), default=-1)
        self._pf_history.append(
            (r[ok], scores[ok], groups[ok] + offset, None if ensemble is None else ensemble[:, ok])
        )
        batches = list(self._pf_history)
        window = [np.concatenate([b[i] for b in batches]) for i in range(3)]
        window_ensemble = (
            None if ensemble is None else np.concatenate([b[3] for b in batches], axis=1)
        )
        try:
            flt.fit(*window, rng=rng, ensemble=window_ensemble)
        except ValueError:
            return  # not enough signal yet (e.g. all rewards equal): keep the previous choice
        for spec, value in _adaptive_r2(flt).items():
            if math.isfinite(value):
                self._metrics[mode][f"filter/adaptive_r2/{spec}"].append(float(value))

    @staticmethod
    def _log_stats(metrics, record: rf.FilterStats, rewards, scores) -> None:
        """Log the core's statistics record (:func:`rewardfilter.filter_stats`) under the
        trainer's keys, and the whole batch's Spearman; an undefined (NaN) value is not logged
        (no ensemble, no true score, constant true scores: no evidence about the reward)."""
        values = {key: getattr(record, field) for field, key in _LOGGED_STATS.items()}
        if scores is not None:
            ok = np.isfinite(scores)
            values["filter/spearman_all"] = (
                rf.spearman(rewards[ok], scores[ok]) if ok.any() else math.nan
            )
        for key, value in values.items():
            if math.isfinite(value):
                metrics[key].append(float(value))

    # -- 5. the loss on the kept completions -------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "pf_weight" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        weight = inputs.pop("pf_weight")
        kept_fraction = float(inputs.pop("pf_kept_fraction"))
        inputs["num_items_in_batch"] = inputs.pop("pf_kept_tokens")  # dapo / cispo / vespo
        keep = weight > 0
        n_rows, n_kept = int(keep.shape[0]), int(keep.sum())
        if n_kept == n_rows:
            rows_in_loss = n_rows
        elif n_kept > 0 and can_select_rows(inputs):
            inputs = select_rows(inputs, keep)  # filtered completions skip the forward pass
            rows_in_loss = n_kept
        else:
            # nothing kept here (or multimodal rows): mask every token of the filtered completions
            inputs["completion_mask"] = inputs["completion_mask"] * keep.unsqueeze(1).to(
                inputs["completion_mask"].dtype
            )
            rows_in_loss = n_rows
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.loss_type in ROW_NORMALISED_LOSSES and kept_fraction > 0:
            # TRL divides by the rows of this batch; divide by the kept completions instead
            # (their mean count per batch, so processes with more kept completions weigh more).
            loss = loss * (rows_in_loss / (kept_fraction * n_rows))
        return loss


def _adaptive_r2(flt: rf.Filter) -> dict[str, float]:
    """The R² of each candidate of the (first) adaptive part of ``flt``, if any."""
    for part in getattr(flt, "parts", (flt,)):
        if getattr(part, "r2_", None):
            return dict(part.r2_)
    return {}


def _fill_nan_with_member_mean(members: np.ndarray) -> np.ndarray:
    """Members that returned None for a completion take the other members' mean (0 if none)."""
    bad = ~np.isfinite(members)
    if not bad.any():
        return members
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(np.where(bad, np.nan, members), axis=0), nan=0.0)
    return np.where(bad, mean[None, :], members)


def _resolve_callable(spec: str | Callable | None) -> Callable | None:
    """A callable as given, or one named by an import path ``module:function``."""
    if spec is None or callable(spec):
        return spec
    module_name, _, attr = spec.partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise config_error(
            "true_score_func", "an importable 'module:function'", f"{spec} ({exc})"
        ) from None
    if not callable(target):
        raise config_error("true_score_func", "a callable", spec)
    return target

"""PF-PPO for code generation: PPO with a critic, a KL penalty, and policy filtration.

One iteration of :meth:`PFPPOTrainer.step` reads like the algorithm box of
PF-PPO (Shen & Zhang et al., arXiv 2409.06957):

1. take a batch of prompts (code tasks);
2. sample N responses per prompt (temperature, top-p);
3. score them with the reward model (and its ensemble members), and with the
   true score (the fraction of unit tests passed, from the sandbox) for logging;
4. filter each prompt's group with the core (:func:`rewardfilter.make_filter`):
   only the kept responses are trained on;
5. per-token rewards = ``-kl_coef * (log pi - log pi_ref)`` plus the reward
   score at the last response token; GAE (gamma, lambda) over response tokens;
6. clipped PPO policy loss and clipped value loss, over epochs and
   minibatches of the kept responses;
7. log (JSONL + progress bar) and checkpoint.

The pure math lives in :mod:`rewardfilter.adapters.code.ppo.losses`; rollouts
and experience in :mod:`~rewardfilter.adapters.code.ppo.experience`;
checkpoints in :mod:`~rewardfilter.adapters.code.ppo.checkpoint`.

Reweighting
-----------
A ``rank:w1,...,wN`` filter whose weights are not all 0/1 is a *reweight*.
By default (``reweight="sample"``) it is realised as the PF-PPO authors'
replay buffer does it: each PPO epoch draws, with replacement and with
probability proportional to the weight, as many samples as have a positive
weight, and trains on the draws with loss weight 1. ``reweight="loss"``
instead trains once on every sample with a positive weight, its tokens
weighted by the sample's weight.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rewardfilter as rf

from ..config import PFPPOConfig
from ..device import select_device, select_dtype
from . import checkpoint as _checkpoint
from . import losses as ppo
from .checkpoint import STATE as _STATE
from .experience import (
    Experience,
    Rollout,
    prompt_len_of,
    sandbox_true_score,
    token_logprobs,
    token_values,
)

__all__ = ["PFPPOTrainer"]


class PFPPOTrainer:
    """PPO with a critic and a KL penalty, trained on the responses a core filter keeps.

    Parameters
    ----------
    config : PFPPOConfig
        Hyper-parameters (validated on construction).
    policy : transformers causal LM
        Any model whose forward takes ``input_ids, attention_mask,
        position_ids`` and returns ``.logits``, with a ``generate`` method.
    tokenizer : transformers tokenizer
        Used left-padded for prompts; its EOS ends a response. A missing pad
        token is set to EOS.
    critic : torch module
        Maps ``(input_ids, attention_mask, position_ids)`` to one value per
        token: a ``(B, L)`` tensor, a ``(B, L, 1)`` tensor, or an output with
        ``.values`` / ``.logits`` of either shape.
    tasks : sequence of CodeTask
        Training tasks (each needs ``.prompt``); must be non-empty.
    reward : reward model, callable, or "true"
        Either an object with ``score_members(prompts, completions) -> (K, n)``
        (the reward is the members' mean, the members feed ``uncertainty:``),
        an object with ``score(prompts, completions) -> (n,)``, a callable
        ``(prompts, completions) -> (n,)``, or ``"true"`` to train on the true
        score itself (the oracle).
    reference : causal LM, optional
        The frozen model of the KL penalty; defaults to a frozen copy of the
        policy as it is at construction (before any resume).
    true_score : callable, optional
        ``(tasks, completions) -> (n,)`` array of true scores in [0, 1];
        defaults to :func:`sandbox_true_score`.
    """

    def __init__(
        self,
        config: PFPPOConfig,
        policy: torch.nn.Module,
        tokenizer: Any,
        critic: torch.nn.Module,
        tasks: Sequence[Any],
        reward: Any,
        *,
        reference: torch.nn.Module | None = None,
        true_score: Callable[[Sequence[Any], Sequence[str]], Any] | None = None,
    ) -> None:
        # ---- validate everything before any work --------------------------
        tasks, self.filter = _check_inputs(config, tasks, reward)
        if not hasattr(policy, "generate"):
            raise ValueError(
                f"policy must be a causal LM with generate(); got {type(policy).__name__}."
            )
        if getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("The tokenizer has no eos_token_id; a response could never end.")

        self.config = config
        self.device = select_device(config.device)
        dtype = select_dtype(config.dtype, self.device)
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # prompts are left-padded so that all responses start in one column
        tokenizer.padding_side = "left"
        self.policy = policy.to(self.device, dtype)
        self.critic = critic.to(self.device, dtype)
        self.reference = (reference if reference is not None else copy.deepcopy(policy)).to(
            self.device, dtype
        )
        self.reference.eval().requires_grad_(False)
        # a critic whose forward has no position_ids (it then sees padded positions) still works
        forward_params = inspect.signature(self.critic.forward).parameters
        self._critic_takes_positions = "position_ids" in forward_params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in forward_params.values()
        )
        self.tasks = tasks
        self.reward = reward
        self.true_score = true_score if true_score is not None else sandbox_true_score
        self.policy_opt = torch.optim.Adam(
            [p for p in self.policy.parameters() if p.requires_grad], lr=config.policy_lr
        )
        self.critic_opt = torch.optim.Adam(
            [p for p in self.critic.parameters() if p.requires_grad], lr=config.critic_lr
        )

        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.iteration = 0
        self.samples_generated = 0
        self.samples_used = 0
        self._order = self.rng.permutation(len(tasks))
        self._cursor = 0
        self._running = {
            "count": 0.0,
            "mean": 0.0,
            "m2": 0.0,
        }  # Welford state for reward_norm="running"
        self.history: list[dict] = []
        self.last_weights: np.ndarray | None = None  # filter weights of the last iteration
        self.last_trained: list[
            int
        ] = []  # rollout indices that entered a PPO minibatch last iteration

        log = config.log_path or (
            str(Path(config.checkpoint_dir) / "log.jsonl") if config.checkpoint_dir else None
        )
        self.log_path = Path(log) if log else None

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | os.PathLike,
        tasks: Sequence[Any],
        reward: Any,
        config: PFPPOConfig | None = None,
        *,
        critic_path: str | os.PathLike | None = None,
        lora: dict | None = None,
        true_score: Callable[[Sequence[Any], Sequence[str]], Any] | None = None,
    ) -> PFPPOTrainer:
        """Build a trainer from a local causal-LM directory (what the CLI and the runner use).

        The policy and its tokenizer come from ``model_path``; the critic is a
        fresh value head on the backbone of ``critic_path`` (default: the
        policy's own weights, as the PF-PPO authors and TRL initialise it);
        the reference is a frozen copy of the policy as loaded. Config, tasks,
        reward and the model path are all checked before any weights load.
        """
        from rewardfilter.adapters.code.models import (
            ValueModel,
            check_causal_lm_path,
            frozen_reference,
            load_policy,
        )

        config = PFPPOConfig() if config is None else config
        _check_inputs(config, tasks, reward)
        check_causal_lm_path(model_path, what="policy")
        if critic_path is not None:
            check_causal_lm_path(critic_path, what="critic")
        device = select_device(config.device)
        dtype = select_dtype(config.dtype, device)
        policy, tokenizer = load_policy(model_path, device=device, dtype=dtype, lora=lora)
        critic = ValueModel.from_causal_lm(critic_path or model_path, device=device, dtype=dtype)
        return cls(
            config,
            policy,
            tokenizer,
            critic,
            tasks,
            reward,
            reference=frozen_reference(policy),
            true_score=true_score,
        )

    # =====================================================================
    # one iteration
    # =====================================================================
    def step(self) -> dict:
        """Run one PF-PPO iteration and return its log record."""
        cfg = self.config
        t0 = time.perf_counter()
        # 1. a batch of prompts
        tasks = self._next_tasks()
        # 2. N responses per prompt (temperature, top-p)
        rollout = self.generate(tasks)
        t_gen = time.perf_counter()
        # 3. reward-model scores (and ensemble members); true scores from the sandbox
        rewards, members = self.score_reward(rollout)
        scores = np.asarray(self.true_score(rollout.tasks, rollout.completions), dtype=float)
        t_score = time.perf_counter()
        # 4. the core filter, per prompt group
        weights = self.filter_weights(rewards, rollout.groups, members, scores)
        # 5. kept samples: log-probs, reference log-probs, values, KL-penalised rewards, GAE
        exp = self.make_experience(rollout, rewards, weights)
        # 6. clipped PPO policy and value losses over epochs x minibatches
        stats = self.update(exp, weights)
        elapsed = time.perf_counter() - t0
        timing = {
            "generate_s": t_gen - t0,
            "score_s": t_score - t_gen,
            "train_s": time.perf_counter() - t_score,
        }

        self.iteration += 1
        self.samples_generated += len(rollout.tasks)
        self.samples_used += len(self.last_trained)  # samples that entered a gradient update
        kept = weights > 0
        n_tokens = float(rollout.response_mask.sum())
        record = {
            "iteration": self.iteration,
            "samples": len(rollout.tasks),
            "samples_generated": self.samples_generated,
            "samples_used": self.samples_used,
            "reward_mean": float(rewards.mean()),
            "reward_kept_mean": float(np.average(rewards, weights=weights)),
            "true_score_mean": float(scores.mean()),
            "true_pass_rate": float((scores >= 1.0).mean()),
            "true_pass_rate_kept": float(np.average(scores >= 1.0, weights=weights)),
            "kept_fraction": float(kept.mean()),
            "filtered_r2": _finite_or_none(rf.r2(rewards, scores, weights)),
            "r2_all": _finite_or_none(rf.r2(rewards, scores)),
            "kl": float((exp.kl.sum(-1)).mean()),  # per-sequence KL to the reference, kept samples
            "response_len": n_tokens / len(rollout.tasks),
            "tokens_per_s": n_tokens / elapsed,
            "samples_per_s": len(rollout.tasks) / elapsed,
            "time_s": elapsed,
            **timing,
            "filter": self.filter.spec
            if not isinstance(self.filter, rf.AdaptiveFilter)
            else f"adaptive->{self.filter.chosen_.spec}",
            **stats,
        }
        self._write_log(record)
        if (
            cfg.checkpoint_dir
            and cfg.checkpoint_every
            and self.iteration % cfg.checkpoint_every == 0
        ):
            self.save_checkpoint(cfg.checkpoint_dir)
        return record

    def train(self, iterations: int | None = None) -> list[dict]:
        """Run iterations (resuming from ``checkpoint_dir`` if it holds a checkpoint) and return their records."""
        from tqdm.auto import tqdm

        cfg = self.config
        total = cfg.iterations if iterations is None else iterations
        if (
            cfg.checkpoint_dir
            and (Path(cfg.checkpoint_dir) / _STATE).exists()
            and self.iteration == 0
        ):
            self.load_checkpoint(cfg.checkpoint_dir)
        records = []
        bar = tqdm(
            total=total, initial=min(self.iteration, total), desc="PF-PPO", disable=not cfg.progress
        )
        while self.iteration < total:
            rec = self.step()
            records.append(rec)
            bar.update(1)
            bar.set_postfix(
                reward=f"{rec['reward_mean']:.3f}",
                pass_rate=f"{rec['true_pass_rate']:.2f}",
                kl=f"{rec['kl']:.3f}",
            )
        bar.close()
        if cfg.checkpoint_dir:
            self.save_checkpoint(cfg.checkpoint_dir)
        return records

    # =====================================================================
    # the pieces, in order
    # =====================================================================
    def _next_tasks(self) -> list[Any]:
        """The next prompts_per_iteration tasks of a shuffled pass over the task set (reshuffled each pass)."""
        out = []
        for _ in range(self.config.prompts_per_iteration):
            if self._cursor >= len(self._order):
                self._order, self._cursor = self.rng.permutation(len(self.tasks)), 0
            out.append(self.tasks[int(self._order[self._cursor])])
            self._cursor += 1
        return out

    @torch.no_grad()
    def generate(self, tasks: Sequence[Any]) -> Rollout:
        """Sample N responses per task with the project's shared sampler.

        Using :func:`rewardfilter.adapters.code.sampling.generate` (the one the
        evaluator and the reward model use) keeps the decoded completions,
        cut at HumanEval's stop sequences, identical across training and
        evaluation. Tokens are masked after the first EOS; nucleus sampling
        only (no top-k), as the authors.
        """
        from rewardfilter.adapters.code.sampling import generate

        cfg = self.config
        samples = generate(
            self.policy,
            self.tokenizer,
            [t.prompt for t in tasks],
            n=cfg.samples_per_prompt,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=len(tasks),
        )
        mask = samples.response_mask.float()
        T = max(int(mask.sum(-1).max()), 1)  # drop all-padding columns
        return Rollout(
            tasks=[tasks[g] for g in samples.group],
            groups=np.asarray(samples.group),
            input_ids=torch.cat([samples.prompt_ids, samples.response_ids[:, :T]], dim=1),
            attention_mask=torch.cat([samples.prompt_mask, samples.response_mask[:, :T]], dim=1),
            response_mask=mask[:, :T],
            prompt_len=samples.prompt_ids.shape[1],
            completions=list(samples.completions),
        )

    def score_reward(self, rollout: Rollout) -> tuple[np.ndarray, np.ndarray | None]:
        """Reward of each sample (and the ensemble members' scores when the reward model has them)."""
        if isinstance(self.reward, str):  # "true": the oracle trains on the true score itself
            return np.asarray(
                self.true_score(rollout.tasks, rollout.completions), dtype=float
            ), None
        prompts = [t.prompt for t in rollout.tasks]
        if hasattr(self.reward, "score_members"):
            members = np.asarray(
                self.reward.score_members(prompts, rollout.completions), dtype=float
            )
            if members.ndim != 2 or members.shape[1] != len(prompts):
                raise ValueError(
                    f"score_members must return a (K, n={len(prompts)}) array; got shape {members.shape}."
                )
            return members.mean(axis=0), members
        fn = self.reward.score if hasattr(self.reward, "score") else self.reward
        rewards = np.asarray(fn(prompts, rollout.completions), dtype=float).reshape(-1)
        if rewards.shape[0] != len(prompts):
            raise ValueError(
                f"The reward returned {rewards.shape[0]} scores for {len(prompts)} samples."
            )
        return rewards, None

    def filter_weights(
        self,
        rewards: np.ndarray,
        groups: np.ndarray,
        members: np.ndarray | None,
        scores: np.ndarray,
    ) -> np.ndarray:
        """The core filter's weight per sample, ranked within each prompt's group.

        ``adaptive`` is fitted once, on the first iteration's labelled samples
        (reward-model scores against sandbox scores), then kept fixed, unless
        it arrives already fitted.
        """
        if isinstance(self.filter, rf.AdaptiveFilter) and self.filter.chosen_ is None:
            self.filter.fit(rewards, scores, groups, rng=self.rng, ensemble=members)
        weights = self.filter.weights(rewards, groups, rng=self.rng, ensemble=members)
        self.last_weights = weights
        return weights

    def _normalise(
        self, scores: np.ndarray, kept: np.ndarray, all_scores: np.ndarray
    ) -> np.ndarray:
        mode = self.config.reward_norm
        if mode == "batch":
            sel = scores[kept]
            return (scores - sel.mean()) / (sel.std() + 1e-8)
        if mode == "running":
            r = self._running
            for x in all_scores:  # Welford update with every score of the iteration
                r["count"] += 1
                d = x - r["mean"]
                r["mean"] += d / r["count"]
                r["m2"] += d * (x - r["mean"])
            std = math.sqrt(r["m2"] / r["count"]) if r["count"] > 1 else 1.0
            return (scores - r["mean"]) / (std + 1e-8)
        return scores

    @torch.no_grad()
    def make_experience(
        self, rollout: Rollout, rewards: np.ndarray, weights: np.ndarray
    ) -> Experience:
        """Log-probs, reference log-probs and values of the kept samples; KL-penalised rewards; GAE.

        Only kept samples go through the three forward passes: filtering
        before them is where PF-PPO saves compute.
        """
        cfg = self.config
        kept = np.flatnonzero(weights > 0)
        idx = torch.as_tensor(kept, device=self.device)
        ids, attn = rollout.input_ids[idx], rollout.attention_mask[idx]
        mask = rollout.response_mask[idx]
        logprobs, ref_logprobs, values = [], [], []
        self.policy.eval()
        self.critic.eval()
        for s in range(0, len(kept), cfg.minibatch_size):
            sl = slice(s, s + cfg.minibatch_size)
            logprobs.append(self._logprobs(self.policy, ids[sl], attn[sl], rollout.prompt_len))
            ref_logprobs.append(
                self._logprobs(self.reference, ids[sl], attn[sl], rollout.prompt_len)
            )
            values.append(self._values(ids[sl], attn[sl], rollout.prompt_len))
        logprobs, ref_logprobs, values = (
            torch.cat(x).float() for x in (logprobs, ref_logprobs, values)
        )
        scores = self._normalise(rewards, weights > 0, rewards)[kept]
        token_rewards, kl = ppo.kl_penalised_rewards(
            torch.as_tensor(scores, dtype=torch.float32, device=self.device),
            logprobs,
            ref_logprobs,
            mask,
            cfg.kl_coef,
        )
        advantages, returns = ppo.gae(token_rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = ppo.masked_whiten(advantages, mask)
        loss_weights = None
        if not self.filter.is_binary and cfg.reweight == "loss":
            loss_weights = torch.as_tensor(weights[kept], dtype=torch.float32, device=self.device)
        return Experience(
            idx,
            ids,
            attn,
            mask,
            logprobs,
            ref_logprobs,
            values,
            advantages,
            returns,
            kl,
            loss_weights,
        )

    def update(self, exp: Experience, weights: np.ndarray) -> dict:
        """Clipped PPO policy and value updates over epochs and minibatches of the kept samples."""
        cfg = self.config
        m = exp.index.shape[0]
        sample_probs = None
        if not self.filter.is_binary and cfg.reweight == "sample":
            w = weights[exp.index.cpu().numpy()]
            sample_probs = w / w.sum()
        self.policy.train()
        self.critic.train()
        acc: dict[str, list[float]] = {}
        trained: set[int] = set()
        for _ in range(cfg.ppo_epochs):
            order = (
                self.rng.choice(m, size=m, p=sample_probs)
                if sample_probs is not None
                else self.rng.permutation(m)
            )
            for s in range(0, m, cfg.minibatch_size):
                mb = torch.as_tensor(order[s : s + cfg.minibatch_size], device=self.device)
                lw = exp.loss_weights[mb] if exp.loss_weights is not None else None
                new_logprobs = self._logprobs(
                    self.policy, exp.input_ids[mb], exp.attention_mask[mb], prompt_len_of(exp)
                )
                new_values = self._values(
                    exp.input_ids[mb], exp.attention_mask[mb], prompt_len_of(exp)
                )
                pg_loss, pg_stats = ppo.policy_loss(
                    new_logprobs.float(),
                    exp.logprobs[mb],
                    exp.advantages[mb],
                    exp.mask[mb],
                    cfg.clip,
                    lw,
                )
                vf_loss, vf_stats = ppo.value_loss(
                    new_values.float(),
                    exp.values[mb],
                    exp.returns[mb],
                    exp.mask[mb],
                    cfg.value_clip,
                    lw,
                )
                self.policy_opt.zero_grad(set_to_none=True)
                self.critic_opt.zero_grad(set_to_none=True)
                (
                    pg_loss + vf_loss
                ).backward()  # two separate models: the sum just saves a backward call
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                    torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.policy_opt.step()
                self.critic_opt.step()
                trained.update(exp.index[mb].tolist())
                for k, v in {
                    "policy_loss": pg_loss,
                    "value_loss": vf_loss,
                    **pg_stats,
                    **vf_stats,
                }.items():
                    acc.setdefault(k, []).append(float(v.detach()))
        self.last_trained = sorted(trained)
        return {k: float(np.mean(v)) for k, v in acc.items()}

    # ---- forward helpers -------------------------------------------------
    def _logprobs(
        self, model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int
    ) -> torch.Tensor:
        """Log-prob of each response token under ``model`` (temperature-scaled logits)."""
        return token_logprobs(model, ids, attn, prompt_len, self.config.temperature)

    def _values(self, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int) -> torch.Tensor:
        """The critic's value of the state before each response token."""
        return token_values(self.critic, ids, attn, prompt_len, self._critic_takes_positions)

    # =====================================================================
    # logging and checkpoints
    # =====================================================================
    def _write_log(self, record: dict) -> None:
        self.history.append(record)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    save_checkpoint = _checkpoint.save_checkpoint
    load_checkpoint = _checkpoint.load_checkpoint


def _check_inputs(config: Any, tasks: Any, reward: Any) -> tuple[list[Any], rf.Filter]:
    """Validate what a trainer is given, before any model is loaded or sampled."""
    if not isinstance(config, PFPPOConfig):
        raise TypeError(f"config must be a PFPPOConfig; got {type(config).__name__}.")
    config.validate()
    tasks = list(tasks) if tasks is not None else []
    if not tasks:
        raise ValueError("The task set is empty; PF-PPO needs at least one training task (prompt).")
    missing = [i for i, t in enumerate(tasks) if not isinstance(getattr(t, "prompt", None), str)]
    if missing:
        raise ValueError(f"Every task needs a string 'prompt'; task {missing[0]} has none.")
    if not (isinstance(reward, str) and reward == "true") and not (
        hasattr(reward, "score_members") or hasattr(reward, "score") or callable(reward)
    ):
        raise ValueError(
            "reward must have score_members(...) or score(...), be a callable, or be 'true'."
        )
    filt = rf.make_filter(config.filter)
    if filt.needs_ensemble and not hasattr(reward, "score_members"):
        raise ValueError(
            f"Filter {filt.spec!r} needs a reward-model ensemble: reward must have "
            "score_members(prompts, completions)."
        )
    return tasks, filt


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None

"""PF-PPO for code generation: PPO with a critic, a KL penalty, and policy filtration.

One iteration of :meth:`PFPPOTrainer.step` reads like the algorithm box of
PF-PPO (Shen & Zhang et al., arXiv 2409.06957):

1. take a batch of prompts (code tasks);
2. sample N responses per prompt (temperature, top-p);
3. their rewards from the reward model (and its ensemble members), and their
   true scores (the fraction of unit tests passed, from the sandbox) for logging;
4. filter each prompt's group with the core (:func:`rewardfilter.make_filter`);
5. per-token rewards = ``-kl_coef * (log pi - log pi_ref)`` plus the
   normalised reward at the last scored token; GAE (gamma, lambda);
6. clipped PPO policy loss and clipped value loss, over epochs and
   minibatches, realised as ``drop`` or ``resample`` (below);
7. log (JSONL + progress bar) and checkpoint.

The pure math lives in :mod:`.losses`; rollouts and experience in
:mod:`.experience`; step 4 (the filter) in :mod:`.filtering`; step 6 (the
update over epochs x minibatches) in :mod:`.update`; the Accelerate
collectives in :mod:`.parallel`; reward normalisation and the pooled
statistics in :mod:`.stats`; checkpoints in :mod:`.checkpoint`.

How a filter is realised
------------------------
``realisation="resample"`` (default, the authors' main path): every response
goes through the forward passes, advantages are whitened over all of them,
and each epoch draws as many samples as the rollout holds, with
replacement, in proportion to the filter's expected weights
(:func:`.experience.expected_weights`); every filter then takes the same
number of gradient steps per iteration. ``realisation="drop"`` (the authors'
``openrlhf_filter``): only the kept responses are forwarded and trained on,
whitened over them; a non-binary ``rank:`` filter is then realised by
weighted draws (``reweight="sample"``) or per-sample loss weights
(``reweight="loss"``).

Precision and parallelism
-------------------------
Trained models keep float32 master weights; with ``dtype`` bfloat16/float16
their forward passes run under ``torch.autocast`` (float16 with a gradient
scaler). Under ``accelerate launch`` each process samples its own prompts
(all N responses of a prompt on one process), DDP averages gradients,
advantage whitening and the loss normaliser are global sums, statistics are
gathered for the log, and checkpoints are written by the main process.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import PFPPOConfig
from ..device import select_dtype
from ..models import disable_dropout, is_lora
from . import build as _build
from . import checkpoint as _checkpoint
from . import filtering as _filtering
from . import losses
from . import stats as _stats
from . import update as _update
from .checkpoint import STATE as _STATE
from .experience import (
    Experience,
    Rollout,
    expected_weights,
    sandbox_true_score,
    token_logprobs,
    token_values,
)
from .parallel import Parallel
from .stats import RewardNormaliser, Window

__all__ = ["PFPPOTrainer"]


class PFPPOTrainer:
    """PPO with a critic and a KL penalty, trained on the responses a core filter keeps.

    Parameters
    ----------
    config : PFPPOConfig
        Hyper-parameters (validated on construction).
    policy : transformers causal LM
        Any model whose forward takes ``input_ids, attention_mask,
        position_ids`` and returns ``.logits``, with a ``generate`` method; a
        peft (LoRA) model trains its adapters only. Its dropout is switched
        off and its weights are kept in float32.
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
        Either an object with ``predict_members(prompts, completions) -> (K, n)``
        (the reward is the members' mean, the members feed ``uncertainty:``;
        K = 1 is fine), an object with ``predict(prompts, completions) -> (n,)``,
        a callable ``(prompts, completions) -> (n,)``, or ``"true"`` to train
        on the true score itself (the oracle). A ``reward_stats`` attribute
        (``{"mean", "std"}``) is used by ``reward_norm="model"``.
    reference : causal LM, optional
        The frozen model of the KL penalty. Default: for a LoRA policy, the
        policy with its adapter disabled (no copy); otherwise a frozen copy
        of the policy as it is at construction (before any resume).
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
        tasks, self.filter = _build.check_inputs(config, tasks, reward)
        if not hasattr(policy, "generate"):
            raise ValueError(
                f"policy must be a causal LM with generate(); got {type(policy).__name__}."
            )
        if getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("The tokenizer has no eos_token_id; a response could never end.")
        self.config = config
        self.dist = Parallel(config.device)
        if config.prompts_per_iteration % self.dist.world_size:
            raise ValueError(
                f"The 'prompts_per_iteration' parameter of PFPPOConfig must be a multiple of the "
                f"number of processes ({self.dist.world_size}); got {config.prompts_per_iteration}."
            )
        self.device = self.dist.device
        self.compute_dtype = select_dtype(config.dtype, self.device)
        launched = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if self.compute_dtype == torch.float32 and self.dist.mixed_precision in launched:
            self.compute_dtype = launched[
                self.dist.mixed_precision
            ]  # accelerate launch --mixed_precision
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # all responses start in one column

        # ---- models: float32 masters, dropout off, the reference frozen ---
        self.policy = disable_dropout(policy).to(self.device, torch.float32)
        self.critic = disable_dropout(critic).to(self.device, torch.float32)
        if reference is None and not is_lora(self.policy):
            reference = copy.deepcopy(self.policy)
        self.reference = reference  # None: the LoRA policy with its adapter disabled
        if (
            self.reference is not None
        ):  # frozen: stored in the compute dtype (half the memory in bf16)
            self.reference = disable_dropout(self.reference).to(self.device, self.compute_dtype)
            self.reference.eval().requires_grad_(False)
        forward_params = inspect.signature(self.critic.forward).parameters
        self._critic_takes_positions = "position_ids" in forward_params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in forward_params.values()
        )
        self._policy_train = self.dist.prepare(self.policy)  # DDP wrappers (or the models)
        self._critic_train = self.dist.prepare(self.critic)
        if isinstance(reward, torch.nn.Module) or hasattr(reward, "members"):
            reward.to(self.device)  # a reward model predicts on this process's device
        self.tasks, self.reward = tasks, reward
        self.true_score = true_score if true_score is not None else sandbox_true_score

        # ---- optimisers, schedules, precision -----------------------------
        betas = (config.adam_beta1, config.adam_beta2)
        self.policy_opt = torch.optim.Adam(
            [p for p in self.policy.parameters() if p.requires_grad], config.policy_lr, betas=betas
        )
        self.critic_opt = torch.optim.Adam(
            [p for p in self.critic.parameters() if p.requires_grad], config.critic_lr, betas=betas
        )
        self.policy_sched, self.critic_sched = (
            _build.schedule(opt, config, self.dist.world_size)
            for opt in (self.policy_opt, self.critic_opt)
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.compute_dtype == torch.float16
        )

        # ---- state --------------------------------------------------------
        self.order_rng = np.random.default_rng(config.seed)  # the same on every process
        self.rng = np.random.default_rng([config.seed, self.dist.rank])  # this process's draws
        torch.manual_seed(config.seed + self.dist.rank)
        self.iteration = self.samples_generated = self.samples_used = 0
        self.gradient_steps = 0  # the policy's optimiser steps so far (every process takes as many)
        self._order = self.order_rng.permutation(len(tasks))
        self._cursor = 0
        self.normaliser = RewardNormaliser(config.reward_norm, config.reward_clip, reward)
        self.window = Window(config.adaptive_window)
        self.history: list[dict] = []
        self.last_weights: np.ndarray | None = None  # this process's filter weights, last iteration
        self.last_trained: list[int] = []  # rollout rows that entered a minibatch, last iteration
        self.last_fallback = False
        self.last_trained_tokens = 0.0
        log = config.log_path or (
            str(Path(config.checkpoint_dir) / "log.jsonl") if config.checkpoint_dir else None
        )
        self.log_path = Path(log) if log else None

    #: Build a trainer from a local causal-LM directory (the CLI's and the runner's path):
    #: see :func:`.build.from_pretrained`.
    from_pretrained = classmethod(_build.from_pretrained)

    # =====================================================================
    # one iteration
    # =====================================================================
    def step(self) -> dict:
        """Run one PF-PPO iteration and return its log record."""
        cfg = self.config
        t0 = time.perf_counter()
        # 1. this process's share of a batch of prompts
        tasks = self._next_tasks()
        # 2. N responses per prompt (temperature, top-p)
        rollout = self.generate(tasks)
        t_gen = time.perf_counter()
        # 3. rewards from the reward model (and its members); true scores from the sandbox
        rewards, members = self.predict_rewards(rollout)
        scores = np.asarray(self.true_score(rollout.tasks, rollout.completions), dtype=float)
        t_score = time.perf_counter()
        # 4. the core filter, per prompt group (adaptive: refitted on the pooled window)
        weights = self.filter_weights(rewards, rollout.groups, members, scores)
        # 5. log-probs, reference log-probs, values, KL-penalised rewards, GAE
        exp = self.make_experience(rollout, rewards, weights, members)
        # 6. clipped PPO policy and value losses over epochs x minibatches
        stats = self.update(exp)
        t_end = time.perf_counter()
        # 7. log and checkpoint
        record = self._record(rollout, rewards, scores, weights, exp, stats)
        record.update(
            time_s=t_end - t0,
            generate_s=t_gen - t0,
            score_s=t_score - t_gen,
            train_s=t_end - t_score,
            samples_per_s=record["samples"] / (t_end - t0),
            tokens_per_s=record["response_tokens"] / (t_end - t0),
            trained_tokens_per_s=record["trained_tokens"] / (t_end - t0),
        )
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
        ckpt = cfg.checkpoint_dir
        if ckpt and (Path(ckpt) / _STATE).exists() and self.iteration == 0:
            self.load_checkpoint(ckpt)
        records = []
        show = cfg.progress and self.dist.is_main
        bar = tqdm(total=total, initial=min(self.iteration, total), desc="PF-PPO", disable=not show)
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
        if ckpt:
            self.save_checkpoint(ckpt)
        return records

    # =====================================================================
    # the pieces, in order
    # =====================================================================
    def _next_tasks(self) -> list[Any]:
        """This process's share of the next prompts_per_iteration tasks of a shuffled pass."""
        out = []
        for _ in range(self.config.prompts_per_iteration):
            if self._cursor >= len(self._order):
                self._order, self._cursor = self.order_rng.permutation(len(self.tasks)), 0
            out.append(self.tasks[int(self._order[self._cursor])])
            self._cursor += 1
        share = len(out) // self.dist.world_size
        return out[self.dist.rank * share : (self.dist.rank + 1) * share]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @torch.no_grad()
    def generate(self, tasks: Sequence[Any]) -> Rollout:
        """Sample N responses per task with the project's shared sampler.

        Using :func:`rewardfilter.adapters.code.sampling.generate` (the one the
        evaluator and the reward model use) keeps the decoded completions,
        cut at HumanEval's stop sequences, identical across training and
        evaluation; its response mask covers exactly the tokens the scored
        text comes from. Nucleus sampling only (no top-k), as the authors.
        """
        from ..sampling import generate

        cfg = self.config
        with self._autocast():
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

    def predict_rewards(self, rollout: Rollout) -> tuple[np.ndarray, np.ndarray | None]:
        """Reward of each sample (and each ensemble member's, when the reward model has members)."""
        if isinstance(self.reward, str):  # "true": the oracle trains on the true score itself
            scores = self.true_score(rollout.tasks, rollout.completions)
            return np.asarray(scores, dtype=float), None
        from ..reward.model import predict_rewards

        return predict_rewards(self.reward, [t.prompt for t in rollout.tasks], rollout.completions)

    def filter_weights(
        self,
        rewards: np.ndarray,
        groups: np.ndarray,
        members: np.ndarray | None,
        scores: np.ndarray,
    ) -> np.ndarray:
        """The core filter's weight per sample (:func:`.filtering.filter_weights`)."""
        return _filtering.filter_weights(self, rewards, groups, members, scores)

    @torch.no_grad()
    def make_experience(
        self,
        rollout: Rollout,
        rewards: np.ndarray,
        weights: np.ndarray,
        members: np.ndarray | None = None,
    ) -> Experience:
        """Old log-probs, reference log-probs and values; KL-penalised rewards; GAE; whitening.

        ``drop`` forwards the kept samples only (where PF-PPO saves compute);
        ``resample`` forwards all and stores each one's draw probability.
        """
        cfg = self.config
        resample = cfg.realisation == "resample"
        rows = np.arange(len(weights)) if resample else np.flatnonzero(weights > 0)
        placeholder = len(rows) == 0  # nothing kept on this process (but elsewhere)
        if placeholder:
            rows = np.array([0])
        idx = torch.as_tensor(rows, device=self.device)
        ids, attn = rollout.input_ids[idx], rollout.attention_mask[idx]
        mask = rollout.response_mask[idx] * (0.0 if placeholder else 1.0)
        chunk = cfg.micro_batch_size or cfg.minibatch_size
        self.policy.eval()
        self.critic.eval()
        logprobs, ref_logprobs, values = [], [], []
        with self._autocast():
            for s in range(0, len(rows), chunk):
                sl = slice(s, s + chunk)
                logprobs.append(self._logprobs(self.policy, ids[sl], attn[sl], rollout.prompt_len))
                ref_logprobs.append(self._ref_logprobs(ids[sl], attn[sl], rollout.prompt_len))
                values.append(self._values(self.critic, ids[sl], attn[sl], rollout.prompt_len))
        logprobs, ref_logprobs, values = (
            torch.cat(x).float() for x in (logprobs, ref_logprobs, values)
        )
        trained = np.concatenate(
            self.dist.gather(rewards[rows] if not placeholder else rewards[:0])
        )
        all_rewards = np.concatenate(self.dist.gather(rewards))
        normalised = self.normaliser(rewards, trained, all_rewards)[rows]
        token_rewards, kl = losses.kl_penalised_rewards(
            torch.as_tensor(normalised, dtype=torch.float32, device=self.device),
            logprobs,
            ref_logprobs,
            mask,
            cfg.kl_coef,
        )
        advantages, returns = losses.gae(token_rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = losses.masked_whiten(advantages, mask, all_reduce=self.dist.sum)
        loss_weights, probs = None, None
        if resample and not placeholder:
            ew = expected_weights(
                self.filter,
                rewards,
                rollout.groups,
                weights if not self.last_fallback else None,
                ensemble=_filtering.ensemble_for_filter(self.filter, members),
                rng=self.rng,
            )
            probs = ew / ew.sum() if ew.sum() > 0 else None
        elif not self.filter.is_binary and not self.last_fallback and not placeholder:
            if cfg.reweight == "loss":
                loss_weights = torch.as_tensor(
                    weights[rows], dtype=torch.float32, device=self.device
                )
            else:
                probs = weights[rows] / weights[rows].sum()
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
            probs,
            placeholder,
        )

    def update(self, exp: Experience) -> dict:
        """Clipped PPO policy and value updates over epochs and minibatches (:func:`.update.update`)."""
        return _update.update(self, exp)

    # ---- forward helpers -------------------------------------------------
    def _logprobs(
        self, model, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int
    ) -> torch.Tensor:
        """Log-prob of each response token under ``model`` (temperature-scaled logits)."""
        return token_logprobs(model, ids, attn, prompt_len, self.config.temperature)

    def _ref_logprobs(self, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int) -> torch.Tensor:
        """Log-probs under the reference: the frozen copy, or the LoRA policy's base."""
        if self.reference is not None:
            return self._logprobs(self.reference, ids, attn, prompt_len)
        with self.policy.disable_adapter():
            return self._logprobs(self.policy, ids, attn, prompt_len)

    def _values(
        self, critic, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int
    ) -> torch.Tensor:
        """The critic's value of the state before each response token."""
        return token_values(critic, ids, attn, prompt_len, self._critic_takes_positions)

    # =====================================================================
    # logging and checkpoints
    # =====================================================================
    # logging: see .stats
    _gather = _stats.gather_arrays
    _global_groups = _stats.global_groups
    _record = _stats.iteration_record
    _write_log = _stats.write_log

    save_checkpoint = _checkpoint.save_checkpoint
    load_checkpoint = _checkpoint.load_checkpoint

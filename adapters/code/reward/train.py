"""Training a learned reward model for code, trained on the starting policy's own samples.

PF-PPO's premise is that the reward model is *imperfect*: trained on limited
data, it ranks some responses wrongly, and it is more trustworthy at some
reward levels than at others. This module builds such a model honestly, the
way the PF-PPO authors built theirs, with no hand-made noise:

1. sample N responses per training prompt from the starting (SFT) policy
   (:func:`collect_reward_data`);
2. label each by executing its task's unit tests in the sandbox: the true
   score is the fraction of asserts passed, ``passed`` means all of them;
3. train a scalar head on the policy's backbone with the Bradley-Terry loss
   on (passing, failing) pairs of the same prompt
   (``-log sigmoid(r_pass - r_fail)``), or pointwise (mean squared error to
   the true score) as an option;
4. repeat with K seeds and bootstrap resamples of the prompts for a
   :class:`RewardEnsemble`, whose member disagreement feeds the core's
   ``uncertainty:`` filter.

Its quality is then *measured* on held-out samples
(:func:`evaluate_reward_model`): pairwise accuracy and the core's ``rf.r2``
between rewards and true scores. With the data sizes of the tiny pipeline
that R² is well below 1, which is the situation PF-PPO is about.

The API the PPO trainer uses is ``predict(prompts, completions) -> (n,)`` (the
ensemble mean) and ``predict_members(prompts, completions) -> (K, n)``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..config import RewardDataConfig, RewardModelConfig
from ..models import check_causal_lm_path, load_tokenizer, select_device
from .data import RewardData, collect_reward_data, make_pairs
from .metrics import evaluate_reward_model
from .model import RewardEnsemble, RewardModel

__all__ = [
    "bradley_terry_loss",
    "build_reward_model",
    "train_reward_ensemble",
    "train_reward_model",
]


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` (Bradley-Terry likelihood).

    The probability the model assigns to "chosen beats rejected" is
    ``sigmoid(r_c - r_r)``; equal rewards give ``log 2`` per pair.
    ``logsigmoid`` keeps large margins exact (no ``log(0)``).
    """
    return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


def _new_member(policy_path, tokenizer, config: RewardModelConfig, seed: int) -> RewardModel:
    from transformers import AutoModel

    torch.manual_seed(seed)
    dev = select_device(config.device)
    backbone = AutoModel.from_pretrained(
        check_causal_lm_path(policy_path, what="reward model backbone")
    )
    model = RewardModel(
        backbone,
        head_init_std=config.head_init_std,
        tokenizer=tokenizer,
        max_length=config.max_length,
    )
    return model.to(dev)


def train_reward_model(
    policy_path: str | os.PathLike,
    data: RewardData,
    config: RewardModelConfig | None = None,
    *,
    seed: int | None = None,
    rows: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "reward model",
) -> tuple[RewardModel, list[float]]:
    """Train one reward model on ``data`` (or its ``rows``) from the policy's backbone.

    Returns
    -------
    (RewardModel, list of float)
        The trained model (eval mode) and the loss of every step.

    Raises
    ------
    ValueError
        If ``data`` is empty, or ``objective="bt"`` finds no pair (no prompt
        with both a better and a worse response): a reward model cannot be
        trained without contrast, and saying so beats a silent no-op.
    """
    from tqdm.auto import tqdm

    config = config or RewardModelConfig()
    seed = config.seed if seed is None else seed
    if len(data) == 0:
        raise ValueError("The reward data is empty; sample responses first (collect_reward_data).")
    tokenizer = load_tokenizer(
        check_causal_lm_path(policy_path, what="reward model backbone"), padding_side="right"
    )
    sub = data if rows is None else data.subset(rows)
    rng = np.random.default_rng(seed)
    if config.objective == "bt":
        items = make_pairs(
            sub.groups,
            sub.scores,
            sub.passed,
            rule=config.pairs,
            max_pairs_per_prompt=config.max_pairs_per_prompt,
            rng=rng,
        )
        if len(items) == 0:
            raise ValueError(
                f"No ({config.pairs}) pair in the reward data ({sub.summary()}): no prompt has both a better and a "
                "worse response. Sample more responses per prompt, at a higher temperature, or use objective='pointwise'."
            )
    else:
        items = np.arange(len(sub))
    model = _new_member(policy_path, tokenizer, config, seed)
    head = list(model.head.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW(
        [
            {"params": body, "lr": config.learning_rate},
            {"params": head, "lr": config.head_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = int(np.ceil(len(items) / config.batch_size))
    losses: list[float] = []
    model.train()
    bar = tqdm(total=steps_per_epoch * config.epochs, desc=desc, unit="step", disable=not progress)
    for _ in range(config.epochs):
        order = rng.permutation(len(items))
        for s in range(steps_per_epoch):
            batch = items[order[s * config.batch_size : (s + 1) * config.batch_size]]
            if config.objective == "bt":
                rows_ = np.concatenate([batch[:, 0], batch[:, 1]])
                r = model.rewards(
                    [sub.prompts[i] for i in rows_], [sub.completions[i] for i in rows_]
                )
                loss = bradley_terry_loss(r[: len(batch)], r[len(batch) :])
            else:
                r = model.rewards(
                    [sub.prompts[i] for i in batch], [sub.completions[i] for i in batch]
                )
                target = torch.as_tensor(sub.scores[batch], dtype=r.dtype, device=r.device)
                loss = torch.nn.functional.mse_loss(r, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    return model, losses


def train_reward_ensemble(
    policy_path: str | os.PathLike,
    data: RewardData,
    config: RewardModelConfig | None = None,
    *,
    heldout: RewardData | None = None,
    progress: bool = True,
) -> RewardEnsemble:
    """Train ``config.ensemble_size`` members (seed ``seed + k``, bootstrap over prompts).

    Bootstrapping resamples *prompts*, not rows, so that a member never sees
    half of a prompt's responses: its pairs stay complete. When ``heldout``
    is given, :func:`evaluate_reward_model` is run on it and stored in
    ``ensemble.report``.
    """
    config = config or RewardModelConfig()
    t0 = time.perf_counter()
    groups = data.groups
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    members, final_losses = [], []
    for k in range(config.ensemble_size):
        seed = config.seed + k
        if config.bootstrap and config.ensemble_size > 1:
            picked = np.random.default_rng(seed + 10_000).integers(0, n_groups, n_groups)
            rows = np.concatenate([np.flatnonzero(groups == g) for g in picked])
            member_data = data.subset(rows)
            # a prompt drawn twice is two groups, so each copy keeps its own pair budget
            copy_of = np.concatenate(
                [np.full(np.sum(groups == g), c) for c, g in enumerate(picked)]
            )
            member_data.task_ids = [
                f"{t}#{c}" for t, c in zip(member_data.task_ids, copy_of, strict=True)
            ]
        else:
            member_data = data
        model, losses = train_reward_model(
            policy_path,
            member_data,
            config,
            seed=seed,
            progress=progress,
            desc=f"reward member {k + 1}/{config.ensemble_size}",
        )
        members.append(model)
        final_losses.append(float(np.mean(losses[-10:])))
    ens = RewardEnsemble(members, config)
    train_rewards = ens.predict(data.prompts, data.completions)
    # stored like the authors' reward model's mean/std: PPO normalises rewards with them
    ens.reward_stats = {"mean": float(train_rewards.mean()), "std": float(train_rewards.std())}
    ens.report = {
        "train": data.summary(),
        "final_losses": final_losses,
        "seconds_train": time.perf_counter() - t0,
    }
    if heldout is not None and len(heldout):
        ens.report["heldout"] = evaluate_reward_model(ens, heldout)
    return ens


def build_reward_model(
    policy_path: str | os.PathLike,
    out: str | os.PathLike,
    data_config: RewardDataConfig | None = None,
    config: RewardModelConfig | None = None,
    *,
    progress: bool = True,
) -> RewardEnsemble:
    """Sample, label, train an ensemble, measure it on held-out prompts, save everything.

    Writes under ``out``: the ensemble (``member_k/`` + ``reward_ensemble.json``
    with the report), ``train_data.jsonl`` and ``heldout_data.jsonl`` (the
    labelled responses, for inspection or retraining).
    """
    from ..curriculum import make_curriculum
    from ..models import load_policy

    data_config = data_config or RewardDataConfig()
    config = config or RewardModelConfig()
    check_causal_lm_path(policy_path, what="policy")
    d = data_config
    train_tasks = make_curriculum(
        "train", d.train_per_family, seed=d.data_seed, families=d.families
    )
    held_tasks = make_curriculum(
        "heldout", d.heldout_per_family, seed=d.data_seed, families=d.families
    )
    policy, tokenizer = load_policy(policy_path, device=config.device)
    kw = {
        name: getattr(d, name) for name in ("n_samples", "temperature", "top_p", "max_new_tokens")
    }
    kw.update(batch_size=d.sample_batch_size, tokenizer=tokenizer, progress=progress)
    t0 = time.perf_counter()
    train = collect_reward_data(policy, train_tasks, seed=d.data_seed, **kw)
    held = collect_reward_data(policy, held_tasks, seed=d.data_seed + 1, **kw)
    seconds_data = time.perf_counter() - t0
    del policy
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train.save_jsonl(out / "train_data.jsonl")
    held.save_jsonl(out / "heldout_data.jsonl")
    ens = train_reward_ensemble(policy_path, train, config, heldout=held, progress=progress)
    ens.report.update(
        policy=str(policy_path),
        data_config=asdict(d),
        heldout_data=held.summary(),
        seconds_data=seconds_data,
    )
    ens.save_pretrained(out)
    return ens

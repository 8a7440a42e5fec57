"""A learned reward model for code, trained on the starting policy's own samples.

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

The API the PPO trainer uses is ``score(prompts, completions) -> (n,)`` (the
ensemble mean) and ``score_members(prompts, completions) -> (K, n)``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .models import ScalarHeadModel, check_causal_lm_path, load_tokenizer, select_device

__all__ = [
    "RewardData",
    "RewardDataConfig",
    "build_reward_model",
    "RewardModel",
    "RewardEnsemble",
    "RewardModelConfig",
    "bradley_terry_loss",
    "collect_reward_data",
    "evaluate_reward_model",
    "make_pairs",
    "pairwise_accuracy",
    "train_reward_ensemble",
    "train_reward_model",
]

ENSEMBLE_FILE = "reward_ensemble.json"


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------


@dataclass
class RewardModelConfig:
    """How a reward model (ensemble) is trained; saved beside it."""

    objective: str = field(
        default="bt",
        metadata={
            "help": "'bt' (Bradley-Terry on pairs of the same prompt, as the PF-PPO authors) or 'pointwise' (MSE to the true score)."
        },
    )
    pairs: str = field(
        default="pass_fail",
        metadata={
            "help": "Which pairs 'bt' uses: 'pass_fail' (a passing vs a failing response, the authors' rule) or 'score' (any two responses whose true scores differ)."
        },
    )
    max_pairs_per_prompt: int = field(
        default=4,
        metadata={
            "help": "Cap on pairs drawn per prompt, so prompts with many samples do not dominate."
        },
    )
    ensemble_size: int = field(default=3, metadata={"help": "Number K of members of the ensemble."})
    bootstrap: bool = field(
        default=True,
        metadata={
            "help": "Train each member on a bootstrap resample of the prompts (besides its own seed)."
        },
    )
    epochs: int = field(
        default=2, metadata={"help": "Passes over each member's training pairs (or samples)."}
    )
    batch_size: int = field(
        default=16, metadata={"help": "Pairs (bt) or samples (pointwise) per optimiser step."}
    )
    learning_rate: float = field(
        default=3e-4, metadata={"help": "AdamW learning rate of the backbone."}
    )
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "AdamW learning rate of the scalar head."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    head_init_std: float = field(
        default=0.02,
        metadata={"help": "Std of the head's initial weights (members differ from the start)."},
    )
    max_length: int = field(
        default=256,
        metadata={"help": "Token cap of prompt + completion (longer inputs keep their end)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of member k is seed + k."})
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu' or 'cuda[:i]'."})

    def __post_init__(self) -> None:
        if self.objective not in ("bt", "pointwise"):
            raise ValueError(
                f"The 'objective' parameter of RewardModelConfig must be 'bt' or 'pointwise'; got {self.objective!r}."
            )
        if self.pairs not in ("pass_fail", "score"):
            raise ValueError(
                f"The 'pairs' parameter of RewardModelConfig must be 'pass_fail' or 'score'; got {self.pairs!r}."
            )
        for name in ("max_pairs_per_prompt", "ensemble_size", "epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"The {name!r} parameter of RewardModelConfig must be an int >= 1; got {value!r}."
                )
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(
                    f"The {name!r} parameter of RewardModelConfig must be a float > 0; got {value!r}."
                )


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


@dataclass
class RewardData:
    """Sampled responses with their execution labels, one row per response.

    Attributes
    ----------
    task_ids, prompts, completions : list of str
        Row-aligned; rows of one task share ``task_id`` (the group).
    scores : np.ndarray of float
        True score: fraction of the task's asserts the response passes.
    passed : np.ndarray of bool
        True when every assert passes.
    """

    task_ids: list[str]
    prompts: list[str]
    completions: list[str]
    scores: np.ndarray
    passed: np.ndarray

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=float)
        self.passed = np.asarray(self.passed, dtype=bool)
        n = len(self.task_ids)
        if not (
            len(self.prompts) == len(self.completions) == len(self.scores) == len(self.passed) == n
        ):
            raise ValueError("RewardData fields must all have one entry per response.")

    def __len__(self) -> int:
        return len(self.task_ids)

    @property
    def groups(self) -> np.ndarray:
        """Dense integer id of each row's task (the core's ``groups``)."""
        _, inv = np.unique(np.asarray(self.task_ids), return_inverse=True)
        return inv

    def subset(self, rows: Sequence[int] | np.ndarray) -> RewardData:
        rows = np.asarray(rows, dtype=int)
        return RewardData(
            [self.task_ids[i] for i in rows],
            [self.prompts[i] for i in rows],
            [self.completions[i] for i in rows],
            self.scores[rows],
            self.passed[rows],
        )

    def save_jsonl(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "w", encoding="utf-8") as fh:
            for i in range(len(self)):
                fh.write(
                    json.dumps(
                        {
                            "task_id": self.task_ids[i],
                            "prompt": self.prompts[i],
                            "completion": self.completions[i],
                            "score": float(self.scores[i]),
                            "passed": bool(self.passed[i]),
                        }
                    )
                    + "\n"
                )
        return p

    @classmethod
    def load_jsonl(cls, path: str | os.PathLike) -> RewardData:
        rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        return cls(
            [r["task_id"] for r in rows],
            [r["prompt"] for r in rows],
            [r["completion"] for r in rows],
            np.array([r["score"] for r in rows], dtype=float),
            np.array([r["passed"] for r in rows], dtype=bool),
        )

    def summary(self) -> dict:
        g = self.groups
        n_groups = int(g.max()) + 1 if len(g) else 0
        mixed = sum(1 for k in range(n_groups) if 0 < self.passed[g == k].sum() < (g == k).sum())
        return {
            "n_responses": len(self),
            "n_prompts": n_groups,
            "pass_rate": float(self.passed.mean()) if len(self) else 0.0,
            "mean_score": float(self.scores.mean()) if len(self) else 0.0,
            "prompts_with_pass_and_fail": mixed,
        }


def collect_reward_data(
    policy,
    tasks: Sequence,
    n_samples: int = 8,
    *,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    tokenizer=None,
    seed: int = 0,
    timeout: float = 3.0,
    device: str | None = "auto",
    progress: bool = True,
) -> RewardData:
    """Sample ``n_samples`` responses per task from the policy and label them by execution.

    Parameters
    ----------
    policy : path-like or causal LM
        The starting policy (a directory, or a loaded model with ``tokenizer``).
    tasks : sequence of CodeTask
        Non-empty; the training prompts of the reward model.
    n_samples : int
        Responses per prompt: several per prompt is what gives same-prompt
        (pass, fail) pairs.
    temperature, top_p, max_new_tokens, batch_size, seed
        Sampling settings (see :func:`sampling.generate`).
    timeout : float
        Sandbox seconds per program.
    """
    from .models import load_policy
    from .sampling import generate
    from .sandbox import score_completions

    tasks = list(tasks)
    if not tasks:
        raise ValueError(
            "The 'tasks' parameter of collect_reward_data must be non-empty; got an empty task set."
        )
    if isinstance(policy, (str, os.PathLike)):
        policy, tokenizer = load_policy(policy, device=device)
    elif tokenizer is None:
        raise ValueError(
            "The 'tokenizer' parameter of collect_reward_data is required with a loaded policy."
        )
    samples = generate(
        policy,
        tokenizer,
        [t.prompt for t in tasks],
        n=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    row_tasks = [tasks[g] for g in samples.group]
    results = score_completions(row_tasks, samples.completions, timeout=timeout)
    scores = np.array([r.score for r in results])
    return RewardData(
        [t.task_id for t in row_tasks],
        [t.prompt for t in row_tasks],
        list(samples.completions),
        scores,
        np.array([r.passed for r in results], dtype=bool),
    )


def make_pairs(
    groups: np.ndarray,
    scores: np.ndarray,
    passed: np.ndarray | None = None,
    *,
    rule: str = "pass_fail",
    max_pairs_per_prompt: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """(chosen, rejected) row pairs of the same prompt.

    Parameters
    ----------
    groups : array of int
        Prompt id per row.
    scores : array of float
        True score per row.
    passed : array of bool, optional
        Needed by ``rule="pass_fail"`` (defaults to ``scores == 1``).
    rule : {"pass_fail", "score"}
        ``pass_fail``: chosen passes every test, rejected does not (the
        PF-PPO authors' pairs). ``score``: chosen has a strictly higher true
        score (uses partial credit too).
    max_pairs_per_prompt : int, optional
        Keep at most this many pairs per prompt, drawn at random.

    Returns
    -------
    np.ndarray of int, shape (m, 2)
        Row indices (chosen, rejected). Empty (0, 2) when no prompt has both
        a better and a worse response.
    """
    from rewardfilter._validation import as_generator

    rng = as_generator(rng)
    groups = np.asarray(groups)
    scores = np.asarray(scores, dtype=float)
    passed = scores >= 1.0 if passed is None else np.asarray(passed, dtype=bool)
    out: list[np.ndarray] = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if rule == "pass_fail":
            good, bad = rows[passed[rows]], rows[~passed[rows]]
            cand = np.array([(i, j) for i in good for j in bad], dtype=int).reshape(-1, 2)
        elif rule == "score":
            cand = np.array(
                [(i, j) for i in rows for j in rows if scores[i] > scores[j]], dtype=int
            ).reshape(-1, 2)
        else:
            raise ValueError(
                f"The 'rule' parameter of make_pairs must be 'pass_fail' or 'score'; got {rule!r}."
            )
        if max_pairs_per_prompt is not None and len(cand) > max_pairs_per_prompt:
            cand = cand[rng.choice(len(cand), max_pairs_per_prompt, replace=False)]
        out.append(cand)
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=int)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` (Bradley-Terry likelihood).

    The probability the model assigns to "chosen beats rejected" is
    ``sigmoid(r_c - r_r)``; equal rewards give ``log 2`` per pair.
    ``logsigmoid`` keeps large margins exact (no ``log(0)``).
    """
    return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


# ----------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------


class RewardModel(ScalarHeadModel):
    """Scalar-head model whose reward is its value at the response's last token.

    The text scored is ``prompt + completion`` followed by EOS, the same
    string the policy produced, so the final position has read the whole
    program, including where it ended.
    """

    kind = "reward"

    def __init__(self, backbone, head_init_std: float = 0.0, tokenizer=None, max_length: int = 256):
        super().__init__(backbone, head_init_std=head_init_std)
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(
        self, prompts: Sequence[str], completions: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask of ``prompt + completion + EOS``, end kept if too long."""
        if self.tokenizer is None:
            raise ValueError(
                "This RewardModel has no tokenizer; pass tokenizer= or load it with from_pretrained."
            )
        if len(prompts) != len(completions):
            raise ValueError(
                f"score needs one prompt per completion; got {len(prompts)} prompts and {len(completions)} completions."
            )
        tok = self.tokenizer
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        seqs = [
            (tok(p + c, add_special_tokens=False)["input_ids"] + eos)[-self.max_length :]
            for p, c in zip(prompts, completions, strict=True)
        ]
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    def rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Differentiable rewards, shape ``(n,)`` (used in training)."""
        ids, mask = self.encode(prompts, completions)
        return self.last_token_values(ids, mask)

    @torch.no_grad()
    def score(
        self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """Rewards as a numpy array, shape ``(n,)``, in eval mode and batches."""
        was = self.training
        self.eval()
        try:
            out = [
                self.rewards(prompts[i : i + batch_size], completions[i : i + batch_size])
                .cpu()
                .numpy()
                for i in range(0, len(prompts), batch_size)
            ]
        finally:
            self.train(was)
        return np.concatenate(out).astype(float) if out else np.zeros(0)

    def score_members(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """A single model is an ensemble of one: shape ``(1, n)``."""
        return self.score(prompts, completions)[None, :]

    def save_pretrained(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        p = super().save_pretrained(path, {"max_length": self.max_length, **(extra or {})})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(p)
        return p

    @classmethod
    def from_pretrained(cls, path, *, device="auto", dtype="auto") -> RewardModel:
        model = super().from_pretrained(path, device=device, dtype=dtype)
        meta = json.loads((Path(path) / "scalar_head.json").read_text())
        model.max_length = int(meta.get("max_length", 256))
        model.tokenizer = load_tokenizer(path, padding_side="right")
        return model


class RewardEnsemble:
    """K reward models scored together; the reward is their mean.

    Parameters
    ----------
    members : list of RewardModel
        Non-empty; they must share a tokenizer vocabulary (they are trained
        from the same policy).
    config : RewardModelConfig, optional
        Saved beside the members for the record.
    """

    def __init__(self, members: Sequence[RewardModel], config: RewardModelConfig | None = None):
        members = list(members)
        if not members:
            raise ValueError("A RewardEnsemble needs at least one member; got none.")
        self.members = members
        self.config = config
        self.report: dict = {}

    def __len__(self) -> int:
        return len(self.members)

    def to(self, device) -> RewardEnsemble:
        for m in self.members:
            m.to(device)
        return self

    def score_members(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Reward of every member, shape ``(K, n)`` (the core's ``ensemble``)."""
        prompts, completions = list(prompts), list(completions)
        return np.stack([m.score(prompts, completions) for m in self.members])

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Ensemble-mean reward, shape ``(n,)``."""
        return self.score_members(prompts, completions).mean(axis=0)

    __call__ = score

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """One sub-directory per member plus ``reward_ensemble.json``."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        names = []
        for k, m in enumerate(self.members):
            name = f"member_{k}"
            m.save_pretrained(p / name)
            names.append(name)
        meta = {
            "members": names,
            "config": asdict(self.config) if self.config is not None else None,
            "report": self.report,
        }
        (p / ENSEMBLE_FILE).write_text(json.dumps(meta, indent=2))
        return p

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device="auto", dtype="auto"
    ) -> RewardEnsemble:
        """Load an ensemble (or a single :class:`RewardModel` directory as K = 1)."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"The reward model path {str(p)!r} does not exist.")
        if (p / ENSEMBLE_FILE).is_file():
            meta = json.loads((p / ENSEMBLE_FILE).read_text())
            members = [
                RewardModel.from_pretrained(p / n, device=device, dtype=dtype)
                for n in meta["members"]
            ]
            cfg = RewardModelConfig(**meta["config"]) if meta.get("config") else None
            ens = cls(members, cfg)
            ens.report = meta.get("report") or {}
            return ens
        return cls([RewardModel.from_pretrained(p, device=device, dtype=dtype)])


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------


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
    ens.report = {
        "train": data.summary(),
        "final_losses": final_losses,
        "seconds_train": time.perf_counter() - t0,
    }
    if heldout is not None and len(heldout):
        ens.report["heldout"] = evaluate_reward_model(ens, heldout)
    return ens


# ----------------------------------------------------------------------------
# how good is it?
# ----------------------------------------------------------------------------


def pairwise_accuracy(
    rewards: np.ndarray,
    groups: np.ndarray,
    scores: np.ndarray,
    passed: np.ndarray | None = None,
    rule: str = "pass_fail",
) -> float:
    """Fraction of same-prompt pairs the rewards order like the true scores (ties count 1/2).

    NaN when the data holds no pair.
    """
    pairs = make_pairs(groups, scores, passed, rule=rule)
    if len(pairs) == 0:
        return float("nan")
    diff = np.asarray(rewards)[pairs[:, 0]] - np.asarray(rewards)[pairs[:, 1]]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def evaluate_reward_model(reward, data: RewardData) -> dict:
    """Reliability of a reward model on labelled (held-out) responses.

    Parameters
    ----------
    reward : RewardModel or RewardEnsemble
        Anything with ``score``; ``score_members`` adds the ensemble's mean
        disagreement and each member's accuracy.
    data : RewardData
        Responses the model was *not* trained on.

    Returns
    -------
    dict
        ``pairwise_accuracy`` (pass vs fail pairs), ``pairwise_accuracy_score``
        (any two different true scores), ``r2`` (the core's ``rf.r2`` of the
        true score on the reward), ``spearman``, ``bon_pass_rate`` (pass rate
        of each prompt's top-reward response) beside ``pass_rate``, and the
        ensemble's ``mean_std`` and ``member_accuracy`` when available.
    """
    import rewardfilter as rf

    if len(data) == 0:
        raise ValueError("evaluate_reward_model needs labelled responses; got an empty RewardData.")
    groups = data.groups
    members = None
    if hasattr(reward, "score_members"):
        members = np.asarray(reward.score_members(data.prompts, data.completions), dtype=float)
        rewards = members.mean(axis=0)
    else:
        rewards = np.asarray(reward.score(data.prompts, data.completions), dtype=float)
    out = {
        "n_responses": len(data),
        "pairwise_accuracy": pairwise_accuracy(
            rewards, groups, data.scores, data.passed, "pass_fail"
        ),
        "pairwise_accuracy_score": pairwise_accuracy(
            rewards, groups, data.scores, data.passed, "score"
        ),
        "r2": float(rf.r2(rewards, data.scores)),
        "pass_rate": float(data.passed.mean()),
    }
    out["spearman"] = float(rf.spearman(rewards, data.scores))
    # Bradley-Terry fixes rewards only up to a per-prompt offset: R² after
    # removing each prompt's mean says how well it ranks *within* a prompt.
    counts = np.bincount(groups)
    centre = lambda x: x - (np.bincount(groups, weights=x) / counts)[groups]  # noqa: E731
    if np.ptp(centre(data.scores)) > 0:
        out["within_prompt_r2"] = float(rf.r2(centre(rewards), centre(data.scores)))
    if counts.min() >= 2:
        specs = ["none", "bon", "br", "bw", "random:2"]
        out["filtered_r2"] = {
            s: float(rf.filtered_r2(s, rewards, data.scores, groups, rng=0)) for s in specs
        }
    best = [np.flatnonzero(groups == g)[np.argmax(rewards[groups == g])] for g in np.unique(groups)]
    out["bon_pass_rate"] = float(data.passed[best].mean())
    if members is not None and len(members) > 1:
        out["mean_std"] = float(rf.ensemble_std(members).mean())
        out["member_accuracy"] = [
            pairwise_accuracy(m, groups, data.scores, data.passed) for m in members
        ]
        out["member_r2"] = [float(rf.r2(m, data.scores)) for m in members]
    return out


# ----------------------------------------------------------------------------
# the whole recipe (what `rewardfilter code train-rm` runs)
# ----------------------------------------------------------------------------


@dataclass
class RewardDataConfig:
    """Which responses the reward model learns from and is judged on."""

    train_per_family: int = field(
        default=60,
        metadata={
            "help": "Curriculum train-split prompts per family whose samples train the reward model (30 gave held-out accuracy 0.70, 60 gave 0.86 on the default tiny model)."
        },
    )
    heldout_per_family: int = field(
        default=15,
        metadata={
            "help": "Curriculum held-out prompts per family whose samples measure it (accuracy, R²)."
        },
    )
    families: list[str] | None = field(
        default=None, metadata={"help": "Curriculum families (default: all)."}
    )
    n_samples: int = field(
        default=8, metadata={"help": "Responses sampled per prompt from the starting policy."}
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature (PF-PPO samples at 1.0)."}
    )
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=96, metadata={"help": "Longest response, in tokens."})
    sample_batch_size: int = field(default=32, metadata={"help": "Prompts per generation call."})
    data_seed: int = field(
        default=1,
        metadata={
            "help": "Seed of the prompt draw and the sampling (use another seed than PPO's)."
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "train_per_family",
            "heldout_per_family",
            "n_samples",
            "max_new_tokens",
            "sample_batch_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"The {name!r} parameter of RewardDataConfig must be an int >= 1; got {value!r}."
                )


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
    from .curriculum import make_curriculum
    from .models import load_policy

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
    kw = dict(
        n_samples=d.n_samples,
        temperature=d.temperature,
        top_p=d.top_p,
        max_new_tokens=d.max_new_tokens,
        batch_size=d.sample_batch_size,
        tokenizer=tokenizer,
        progress=progress,
    )
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

"""One PF-PPO optimisation step with fixed completions; run by tests/test_code_accelerate.py.

Run as ``python tests/accelerate_step.py OUT`` (one process) or under
``accelerate launch --cpu --num_processes 2 tests/accelerate_step.py OUT``.
Every process builds the same micro model and tokenizer; "sampling" returns
fixed responses that depend only on the prompt, so a 1-process run over 8
prompts and a 2-process run over 4 prompts each see the same data. The main
process writes the gradients the optimisers stepped with (after DDP's
all-reduce) and the step's statistics to OUT.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from micro import micro_llama, micro_tokenizer

from rewardfilter.adapters.code.ppo.trainer import PFPPOConfig, PFPPOTrainer

torch.set_num_threads(1)

CORPUS = ["def add(a, b):\n    return a + b\n", "def first(xs):\n    return xs[0]\n"]


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str


TASKS = [Task(f"t{i}", f"def f{i}(x):\n    return x + {i}") for i in range(8)]
N = 3


def build_tokenizer():
    return micro_tokenizer(CORPUS)


build_model = micro_llama


def reward_fn(prompts, completions):
    return np.array(
        [len(c) + 0.1 * p.count("1") for p, c in zip(prompts, completions, strict=True)]
    )


def true_score(tasks, completions):
    return np.array([(len(c) % 4) / 3 for c in completions])


def main(out: str, aggregation: str = "token_mean") -> None:
    from rewardfilter.adapters.code.models import ValueModel

    tokenizer = build_tokenizer()
    policy = build_model(tokenizer, 0)
    critic = ValueModel(build_model(tokenizer, 1).model)
    torch.nn.init.normal_(critic.head.weight, std=0.1)
    eos = tokenizer.eos_token_id

    def fixed_generate(input_ids, attention_mask, num_return_sequences=1, **kwargs):
        rows = []
        for row, mask in zip(input_ids, attention_mask, strict=True):
            prompt = tokenizer.decode(row[mask.bool()], skip_special_tokens=True)
            k = int(prompt.split("+ ")[-1])
            for j in range(num_return_sequences):
                text = " x" * (1 + (k + j) % 4) + f" + {j}"
                rows.append((row, tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]))
        width = max(len(r) for _, r in rows)
        resp = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for _, r in rows])
        return torch.cat([torch.stack([p for p, _ in rows]), resp], 1)

    policy.generate = fixed_generate
    cfg = PFPPOConfig(
        samples_per_prompt=N,
        prompts_per_iteration=8,
        max_new_tokens=8,
        filter="bw",
        realisation="drop",
        minibatch_size=64,
        ppo_epochs=1,
        loss_aggregation=aggregation,
        reward_norm="batch",
        lr_schedule="constant",
        policy_lr=1e-3,
        critic_lr=1e-3,
        device="cpu",
        progress=False,
    )
    trainer = PFPPOTrainer(cfg, policy, tokenizer, critic, TASKS, reward_fn, true_score=true_score)
    grads: dict[str, list[torch.Tensor]] = {}
    for name, opt in (("policy", trainer.policy_opt), ("critic", trainer.critic_opt)):
        real = opt.step

        def step(*a, _name=name, _opt=opt, _real=real, **k):
            params = [p for g in _opt.param_groups for p in g["params"]]
            grads[_name] = [p.grad.detach().clone() for p in params]
            return _real(*a, **k)

        opt.step = step
    record = trainer.step()
    if trainer.dist.is_main:
        torch.save(
            {
                "grads": grads,
                "record": record,
                "world_size": trainer.dist.world_size,
            },
            out,
        )
    trainer.dist.wait()
    trainer.dist.leave(0)  # no interpreter teardown under a 2-process launch (Parallel.leave)


if __name__ == "__main__":
    main(*sys.argv[1:])

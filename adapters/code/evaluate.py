"""pass@k evaluation of any causal LM on code tasks (curriculum or HumanEval).

pass@k is the probability that at least one of k samples passes every unit
test. Estimating it as "did one of the first k samples pass" is high-variance
and, averaged over tasks, biased; Chen et al. (2021, "Evaluating Large
Language Models Trained on Code") draw n >= k samples, count the c correct
ones and use the unbiased estimator

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as a product so that it stays exact for large n (no huge binomials).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from rewardfilter.validation import Interval, check_scalar

__all__ = ["pass_at_k", "evaluate", "task_family"]


def pass_at_k(num_samples, num_correct, k: int) -> np.ndarray:
    """Unbiased pass@k per task (Chen et al. 2021).

    Parameters
    ----------
    num_samples : int or array of int
        Samples drawn per task (n); a scalar is broadcast.
    num_correct : int or array of int
        Samples that passed, per task (c), ``0 <= c <= n``.
    k : int
        ``1 <= k <= n`` for every task.

    Returns
    -------
    np.ndarray of float
        One estimate per task, in [0, 1]. Average it over tasks for the
        benchmark's pass@k.

    Raises
    ------
    ValueError
        If k < 1, k > n, or c is outside [0, n].
    """
    c = np.atleast_1d(np.asarray(num_correct, dtype=np.int64))
    n = np.broadcast_to(np.asarray(num_samples, dtype=np.int64), c.shape)
    check_scalar(k, "k", "pass_at_k", "int", min_val=1)
    if np.any(n < k):
        raise ValueError(
            f"The 'k' parameter of pass_at_k must be at most the number of samples per task "
            f"(n={int(n.min())}); got {k}."
        )
    if np.any(c < 0) or np.any(c > n):
        raise ValueError(
            "The 'num_correct' parameter of pass_at_k must be in [0, num_samples] for every task."
        )
    out = np.empty(c.shape, dtype=float)
    for i, (ni, ci) in enumerate(zip(n.tolist(), c.tolist(), strict=True)):
        if ni - ci < k:  # every k-subset holds a correct sample
            out[i] = 1.0
        else:
            # C(n-c, k) / C(n, k) = prod_{j=n-c+1}^{n} (1 - k / j)
            out[i] = 1.0 - float(np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1)))
    return out


def task_family(task_id: str) -> str:
    """Family used for per-family reports: the curriculum family, else the id's prefix."""
    parts = task_id.split("/")
    if len(parts) == 3 and parts[0] == "curriculum":
        return parts[1]
    return parts[0] if len(parts) > 1 else "tasks"


def evaluate(
    model,
    tasks: Sequence,
    n_samples: int = 1,
    k: Sequence[int] = (1,),
    *,
    temperature: float = 0.0,
    top_p: float = 0.95,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    tokenizer=None,
    device: str | None = "auto",
    seed: int = 0,
    timeout: float = 3.0,
    progress: bool = False,
    return_samples: bool = False,
) -> dict:
    """Sample, execute and report pass@k for a model on a task set.

    Parameters
    ----------
    model : path-like or transformers causal LM
        A model directory (validated before anything else runs) or an
        already-loaded model, in which case ``tokenizer`` is required (the
        trainer evaluates its policy in place this way).
    tasks : sequence of CodeTask
        Non-empty; HumanEval (:func:`load_humaneval`) or curriculum tasks.
    n_samples : int
        Samples per task (n). Greedy decoding (``temperature=0``) needs 1.
    k : sequence of int
        The k of every pass@k to report; each must be <= ``n_samples``.
    temperature, top_p, max_new_tokens, batch_size, seed
        Sampling settings (see :func:`sampling.generate`); ``batch_size``
        counts prompts.
    device : str
        Where an ``model`` given as a path is loaded.
    timeout : float
        Seconds each program may run in the sandbox.
    progress : bool
        Show progress bars.
    return_samples : bool
        Also return the completions and execution results (key ``samples``).

    Returns
    -------
    dict
        ``pass@<k>`` for every k (mean over tasks), ``per_family``
        (pass@1 per family), ``per_task`` (task_id, n, c), ``n_tasks``,
        ``n_samples``, ``mean_test_fraction`` (fraction of asserts passed),
        ``sandbox_modes`` (programs per sandbox mode: ``strong`` when the
        test ran in the trusted evaluator, see ``ExecResult.mode``) and ``seconds``.
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError(
            "The 'tasks' parameter of evaluate must be a non-empty list of CodeTask; got an empty task set."
        )
    check_scalar(n_samples, "n_samples", "evaluate", "int", min_val=1)
    ks = [k] if isinstance(k, int) else list(k)
    bad = [x for x in ks if x not in Interval("int", 1, n_samples)]
    if bad or not ks:
        raise ValueError(
            f"The 'k' parameter of evaluate must hold ints in [1, n_samples={n_samples}]; got {k!r}."
        )
    if temperature == 0 and n_samples > 1:
        raise ValueError(
            f"The 'n_samples' parameter of evaluate must be 1 with temperature=0 (greedy); got {n_samples}."
        )

    from . import sampling
    from .models import check_causal_lm_path, load_policy

    if isinstance(model, (str, os.PathLike)):
        check_causal_lm_path(model, what="model")
        model, tokenizer = load_policy(model, device=device)
    elif tokenizer is None:
        raise ValueError(
            "The 'tokenizer' parameter of evaluate is required when 'model' is a loaded model."
        )

    t0 = time.perf_counter()
    decoding = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
    samples, results = sampling.sample_and_score(
        model,
        tokenizer,
        tasks,
        n=n_samples,
        batch_size=batch_size,
        seed=seed,
        timeout=timeout,
        progress=progress,
        **decoding,
    )
    row_tasks = [tasks[g] for g in samples.group]
    passed = np.array([r.passed for r in results], dtype=bool)
    frac = np.array([r.score for r in results])
    correct = np.bincount(samples.group, weights=passed, minlength=len(tasks)).astype(int)
    n = np.full(len(tasks), n_samples)
    report: dict = {f"pass@{x}": float(pass_at_k(n, correct, x).mean()) for x in ks}
    p1 = pass_at_k(n, correct, 1)
    fam: dict[str, list[float]] = defaultdict(list)
    for t, v in zip(tasks, p1, strict=True):
        fam[task_family(t.task_id)].append(float(v))
    report.update(
        per_family={f: float(np.mean(v)) for f, v in fam.items()},
        per_task=[
            {"task_id": t.task_id, "n": n_samples, "c": int(c)}
            for t, c in zip(tasks, correct, strict=True)
        ],
        n_tasks=len(tasks),
        n_samples=n_samples,
        temperature=temperature,
        mean_test_fraction=float(frac.mean()),
        sandbox_modes=dict(Counter(r.mode for r in results)),
        seconds=time.perf_counter() - t0,
    )
    if return_samples:
        report["samples"] = {
            "task_id": [t.task_id for t in row_tasks],
            "completion": samples.completions,
            "passed": passed.tolist(),
            "status": [r.status for r in results],
        }
    return report

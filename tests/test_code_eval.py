"""pass@k: the unbiased estimator by hand and by brute force, and evaluate() end to end."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rewardfilter.adapters.code.evaluate import evaluate, pass_at_k, task_family


def _brute_force(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (c correct) holding at least one correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_by_hand():
    assert pass_at_k(1, 1, 1)[0] == 1.0
    assert pass_at_k(5, 0, 1)[0] == 0.0
    assert pass_at_k(5, 1, 1)[0] == pytest.approx(0.2)  # pass@1 = c / n
    assert pass_at_k(5, 2, 2)[0] == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 5, 5)[0] == pytest.approx(1 - 1 / 252)  # 1 - C(5,5)/C(10,5)
    assert pass_at_k(4, 2, 3)[0] == 1.0  # n - c < k: every 3-subset has a correct one


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k)[0] == pytest.approx(_brute_force(n, c, k), abs=1e-12)


def test_pass_at_k_is_vectorised_and_exact_for_large_n():
    out = pass_at_k([10, 10, 200], [0, 10, 3], 1)
    np.testing.assert_allclose(out, [0.0, 1.0, 3 / 200])
    big = pass_at_k(1000, 7, 100)[0]
    assert big == pytest.approx(1 - math.comb(993, 100) / math.comb(1000, 100), rel=1e-9)


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="at most the number of samples"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="'k' parameter"):
        pass_at_k(3, 1, 0)
    with pytest.raises(ValueError, match="num_correct"):
        pass_at_k(3, 4, 1)


def test_task_family():
    assert task_family("curriculum/loops/sum_from_3") == "loops"
    assert task_family("HumanEval/12") == "HumanEval"


def test_evaluate_rejects_bad_input_before_any_work(tmp_path):
    from rewardfilter.adapters.code.curriculum import make_curriculum

    tasks = make_curriculum("heldout", 1, families=["constants"])
    with pytest.raises(ValueError, match="empty task set"):
        evaluate(tmp_path / "missing", [], n_samples=1)
    with pytest.raises(ValueError, match="'k' parameter"):
        evaluate(tmp_path / "missing", tasks, n_samples=2, k=(5,), temperature=1.0)
    with pytest.raises(ValueError, match="greedy"):
        evaluate(tmp_path / "missing", tasks, n_samples=4, k=(1,), temperature=0.0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(tmp_path / "missing", tasks, n_samples=1)


def test_evaluate_scores_the_samples_with_the_sandbox(monkeypatch):
    """A stub sampler answers correctly on chosen rows; evaluate must count exactly those."""
    pytest.importorskip("torch")
    from rewardfilter.adapters.code import sampling
    from rewardfilter.adapters.code.curriculum import make_curriculum

    tasks = make_curriculum("heldout", 2, families=["constants", "arithmetic"])
    correct_rows = {0: [0, 1, 2], 1: [0], 2: [], 3: [1, 2]}  # task -> rows (of 3) that are right

    def fake_generate(model, tokenizer, prompts, *, n=1, **kw):
        completions, groups = [], []
        for i, _ in enumerate(prompts):
            for j in range(n):
                ok = j in correct_rows[i]
                completions.append(tasks[i].canonical_solution if ok else "    return None\n")
                groups.append(i)
        return sampling.Samples(
            list(prompts), np.array(groups), completions, *([None] * 4), np.zeros(len(groups), bool)
        )

    monkeypatch.setattr(sampling, "generate", fake_generate)
    report = evaluate(object(), tasks, n_samples=3, k=(1, 2), temperature=1.0, tokenizer=object())
    assert [t["c"] for t in report["per_task"]] == [3, 1, 0, 2]
    assert report["pass@1"] == pytest.approx(np.mean([1, 1 / 3, 0, 2 / 3]))
    assert report["pass@2"] == pytest.approx(np.mean([1, 1 - 1 / 3, 0, 1]))
    assert report["per_family"] == pytest.approx({"constants": 4 / 6, "arithmetic": 1 / 3})

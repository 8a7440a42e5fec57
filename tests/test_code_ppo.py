"""The PPO math of the code trainer on cases small enough to check by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from rewardfilter.adapters.code import ppo  # noqa: E402

torch.set_num_threads(1)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def close(actual, expected):
    return torch.allclose(actual, t(expected), atol=1e-6)


def test_masked_mean_ignores_masked_values_and_is_token_level():
    x = t([[1.0, 2.0, 99.0], [3.0, -50.0, -50.0]])
    mask = t([[1, 1, 0], [1, 0, 0]])
    assert ppo.masked_mean(x, mask).item() == pytest.approx(2.0)  # (1 + 2 + 3) / 3 tokens
    # per-sample weights scale each sample's tokens
    assert ppo.masked_mean(x, mask, t([1.0, 3.0])).item() == pytest.approx((1 + 2 + 9) / 5)
    # an empty selection is 0, not NaN, and still differentiable
    y = x.clone().requires_grad_(True)
    out = ppo.masked_mean(y, torch.zeros_like(mask))
    out.backward()
    assert out.item() == 0.0 and torch.all(y.grad == 0)


def test_last_token_index():
    mask = t([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert ppo.last_token_index(mask).tolist() == [2, 0, -1]


def test_kl_penalised_rewards_by_hand():
    logp = t([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    ref = t([[-1.5, -1.0, -3.0], [-1.0, -1.0, -9.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    rewards, kl = ppo.kl_penalised_rewards(t([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    assert close(kl, [[0.5, -1.0, 0.0], [0.5, 0.5, 0.0]])
    assert close(rewards, [[-0.05, 0.1, 2.0], [-0.05, -0.05 - 1.0, 0.0]])


def test_gae_matches_hand_computation():
    # one response of 3 tokens, gamma = 1, lambda = 0.5
    rewards = t([[0.0, 0.0, 1.0]])
    values = t([[0.5, 0.2, 0.4]])
    mask = t([[1, 1, 1]])
    adv, ret = ppo.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.4  # last token: no bootstrap
    d1 = 0.0 + 0.4 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert close(adv, [[a0, a1, a2]])
    assert close(ret, [[a0 + 0.5, a1 + 0.2, a2 + 0.4]])


def test_gae_with_gamma_one_lambda_one_is_reward_to_go_minus_value():
    rewards = t([[0.1, -0.2, 0.3, 1.0]])
    values = t([[0.3, 0.1, -0.4, 0.2]])
    adv, ret = ppo.gae(rewards, values, t([[1, 1, 1, 1]]), gamma=1.0, lam=1.0)
    to_go = [1.2, 1.1, 1.3, 1.0]
    assert close(ret, [to_go])
    assert close(adv, [[g - v for g, v in zip(to_go, [0.3, 0.1, -0.4, 0.2], strict=True)]])


def test_gae_padding_is_terminal_and_its_values_change_nothing():
    rewards = t([[0.0, 1.0, 0.0, 0.0]])
    values = t([[0.5, 0.2, 0.0, 0.0]])
    mask = t([[1, 1, 0, 0]])
    adv, ret = ppo.gae(rewards, values, mask, gamma=0.9, lam=0.95)
    # garbage in the padded positions (rewards and values) must not matter
    adv2, ret2 = ppo.gae(
        t([[0.0, 1.0, 7.0, -3.0]]), t([[0.5, 0.2, 11.0, 5.0]]), mask, gamma=0.9, lam=0.95
    )
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)
    assert adv[0, 2:].tolist() == [0.0, 0.0]
    assert adv[0, 1].item() == pytest.approx(1.0 - 0.2)  # terminal: no bootstrap from padding


def test_policy_loss_clipping_by_hand():
    old = t([[0.0, 0.0, 0.0]])
    new = t([[math.log(1.5), math.log(0.5), math.log(1.1)]])
    adv = t([[1.0, 1.0, -2.0]])
    mask = t([[1, 1, 1]])
    loss, stats = ppo.policy_loss(new, old, adv, mask, clip=0.2)
    # token 0: ratio 1.5, A>0 -> clipped at 1.2 -> -1.2
    # token 1: ratio 0.5, A>0 -> min(0.5, 0.8) = 0.5 -> -0.5 (unclipped is more pessimistic)
    # token 2: ratio 1.1, A<0 -> min(-2.2, -2.2) -> 2.2
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert stats["clipfrac"].item() == pytest.approx(1 / 3)


def test_policy_loss_gradient_zero_when_clipped():
    old = t([[0.0]])
    new = t([[math.log(1.5)]]).requires_grad_(True)
    loss, _ = ppo.policy_loss(new, old, t([[1.0]]), t([[1.0]]), clip=0.2)
    loss.backward()
    assert new.grad.item() == 0.0


def test_value_loss_clipping_by_hand():
    old = t([[1.0, 1.0]])
    new = t([[2.0, 1.1]])
    ret = t([[3.0, 0.0]])
    loss, stats = ppo.value_loss(new, old, ret, t([[1, 1]]), clip=0.2)
    # token 0: unclipped (2-3)^2 = 1, clipped (1.2-3)^2 = 3.24 -> 3.24
    # token 1: unclipped 1.21, clipped 1.1 within clip -> 1.21
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.21) / 2)
    assert stats["vf_clipfrac"].item() == pytest.approx(0.5)


def test_losses_ignore_masked_tokens():
    mask = t([[1, 1, 0]])
    a = ppo.policy_loss(
        t([[-1.0, -2.0, -3.0]]), t([[-1.1, -2.2, -3.0]]), t([[1.0, -1.0, 0.0]]), mask, 0.2
    )[0]
    b = ppo.policy_loss(
        t([[-1.0, -2.0, 40.0]]), t([[-1.1, -2.2, -9.0]]), t([[1.0, -1.0, 1e6]]), mask, 0.2
    )[0]
    assert a.item() == b.item()
    c = ppo.value_loss(t([[1.0, 2.0, 3.0]]), t([[1.0, 2.0, 3.0]]), t([[0.0, 0.0, 0.0]]), mask, 0.2)[
        0
    ]
    d = ppo.value_loss(
        t([[1.0, 2.0, -8.0]]), t([[1.0, 2.0, 5.0]]), t([[0.0, 0.0, 100.0]]), mask, 0.2
    )[0]
    assert c.item() == d.item()


def test_masked_whiten():
    x = t([[1.0, 2.0, 3.0, 100.0]])
    mask = t([[1, 1, 1, 0]])
    w = ppo.masked_whiten(x, mask)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)
    assert w[0, 3].item() == 0.0


def test_approx_kl_is_zero_at_equality_and_positive_otherwise():
    lp = t([[-1.0, -2.0]])
    assert torch.allclose(ppo.approx_kl(lp, lp), torch.zeros(1, 2))
    assert (ppo.approx_kl(lp, t([[-1.5, -1.0]])) > 0).all()

"""MoE model: shapes, routing masks, partial state transfer, naming contract."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fedalign.sim.client import local_train  # noqa: E402
from fedalign.sim.model import (  # noqa: E402
    MoEModel,
    expert_of_key,
    load_partial_state,
    partial_state,
    state_nbytes,
)


def _model(**kw):
    torch.manual_seed(0)
    return MoEModel(12, 5, 4, expert_hidden=6, **kw)


@pytest.mark.parametrize("trunk", [None, 8])
@pytest.mark.parametrize("top_k", [1, 2])
def test_forward_shapes_and_normalised(trunk, top_k):
    m = _model(trunk_hidden=trunk, top_k=top_k)
    x = torch.randn(9, 3, 4)  # flattened to 12
    logp = m(x)
    assert logp.shape == (9, 5)
    assert torch.allclose(logp.exp().sum(1), torch.ones(9), atol=1e-5)
    assert m.routing(x).shape == (9, 4)
    assert m.expert_log_probs(x, 2).shape == (9, 5)


def test_mask_uses_only_allowed_experts():
    m = _model()
    x = torch.randn(16, 12)
    mask = torch.tensor([False, True, False, False])
    # with one allowed expert the (renormalised) mixture is that expert alone
    assert torch.allclose(m(x, mask), m.expert_log_probs(x, 1), atol=1e-6)
    # gradients reach only the allowed expert
    m(x, mask, renormalise=False).sum().backward()
    for j, expert in enumerate(m.experts):
        has_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in expert.parameters())
        assert has_grad == (j == 1)
    assert m.gate.weight.grad is not None and m.gate.weight.grad.abs().sum() > 0


def test_naming_contract():
    m = _model(trunk_hidden=8)
    keys = list(m.state_dict())
    assert {expert_of_key(k) for k in keys} == {None, 0, 1, 2, 3}
    shared = [k for k in keys if expert_of_key(k) is None]
    assert shared and all(not k.startswith("experts.") for k in shared)
    assert expert_of_key("experts.12.0.weight") == 12
    with pytest.raises(ValueError, match="expert index"):
        expert_of_key("experts.x.weight")


def test_partial_state_roundtrip():
    src, dst = _model(trunk_hidden=8), MoEModel(12, 5, 4, expert_hidden=6, trunk_hidden=8)
    part = partial_state(src, [1, 3])
    assert {expert_of_key(k) for k in part} == {None, 1, 3}
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    load_partial_state(dst, part)
    after = dst.state_dict()
    for k, v in after.items():
        e = expert_of_key(k)
        expected = src.state_dict()[k] if e in (None, 1, 3) else before[k]
        assert torch.equal(v, expected), k
    # copies, not views: changing the source afterwards does not change the sent state
    with torch.no_grad():
        src.experts[1][0].weight.add_(1.0)
    assert not torch.equal(part["experts.1.0.weight"], src.experts[1][0].weight)
    full = sum(v.numel() * 4 for v in src.state_dict().values())
    assert state_nbytes(part) < full
    assert state_nbytes(partial_state(src, range(4))) == full


def test_partial_state_errors():
    m = _model()
    with pytest.raises(ValueError, match="expert_ids"):
        partial_state(m, [4])
    with pytest.raises(KeyError, match="nope"):
        load_partial_state(m, {"nope": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        load_partial_state(m, {"gate.bias": torch.zeros(3)})


@pytest.mark.parametrize("reward", ["accuracy", "routing", "loss-reduction"])
def test_local_train_returns_only_assigned(reward):
    m = _model()
    x, y = torch.randn(40, 12), torch.randint(0, 5, (40,))
    untouched = m.experts[0][0].weight.clone()
    state, metrics = local_train(
        m, [2, 3], (x, y), epochs=3, lr=0.05, batch_size=16, seed=1, reward=reward
    )
    assert {expert_of_key(k) for k in state} == {None, 2, 3}
    assert torch.equal(m.experts[0][0].weight, untouched)
    assert metrics["samples"] == 40 and metrics["steps"] == 9
    assert set(metrics["rewards"]) == {2, 3}
    assert all(0.0 <= r <= 1.0 for r in metrics["rewards"].values())
    assert metrics["loss"] < metrics["loss_before"]


def test_reward_measured_on_received_expert():
    # "accuracy" reward equals the received expert's accuracy, independent of training
    m = _model()
    x, y = torch.randn(30, 12), torch.randint(0, 5, (30,))
    expected = float((m.expert_log_probs(x, 1).argmax(1) == y).float().mean())
    _, metrics = local_train(m, [1], (x, y), epochs=5, lr=0.1, seed=0)
    assert metrics["rewards"][1] == pytest.approx(expected)


def test_local_train_deterministic_under_seed():
    x, y = torch.randn(30, 12), torch.randint(0, 5, (30,))
    a, _ = local_train(_model(), [0], (x, y), seed=7)
    b, _ = local_train(_model(), [0], (x, y), seed=7)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_local_train_validates():
    m = _model()
    data = (torch.randn(4, 12), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="expert_ids"):
        local_train(m, [], data)
    with pytest.raises(ValueError, match="expert_ids"):
        local_train(m, [9], data)
    with pytest.raises(ValueError, match="reward"):
        local_train(m, [0], data, reward="vibes")


def test_experts_of_different_widths():
    torch.manual_seed(0)
    m = MoEModel(12, 5, 3, expert_hidden=(2, 4, 8), trunk_hidden=6)
    assert m.expert_hidden == (2, 4, 8)
    sizes = [state_nbytes(partial_state(m, [j])) - state_nbytes(partial_state(m, [])) for j in range(3)]
    # one hidden layer over the 6-unit trunk: (6 + 1) * h + (h + 1) * 5 floats of 4 bytes
    assert sizes == [4 * (7 * h + 5 * (h + 1)) for h in (2, 4, 8)]
    x = torch.randn(4, 12)
    assert m(x).shape == (4, 5)
    state, _ = local_train(m, [0, 2], (x.numpy(), torch.randint(0, 5, (4,)).numpy()), epochs=1)
    assert {k.split(".")[1] for k in state if k.startswith("experts.")} == {"0", "2"}


def test_expert_widths_are_checked():
    with pytest.raises(ValueError, match="expected one width or 3 widths, got 2"):
        MoEModel(4, 2, 3, expert_hidden=(2, 3))
    with pytest.raises(ValueError, match="expert_hidden: must be >= 1, got 0"):
        MoEModel(4, 2, 2, expert_hidden=(2, 0))

"""The parallel-in-time cores (minGRU, minLSTM): the prefix scan against the step-by-step
recurrence (outputs, final states and every gradient, episode resets inside the sequences), the
acting step against the scan, batch independence, and resets that forget the past exactly."""

import pytest
import torch

from agents import AGENTS, MinGRU, MinLSTM, RecurrentState, make_agent, make_core
from agents.scan import linear_scan, prefix_scan, step_by_step

B, D, H = 5, 3, 8
CORES = {"mingru": MinGRU, "minlstm": MinLSTM}
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device: the scan runs on the CPU only"
        ),
    ),
]


def starts_with_resets(T: int, seed: int) -> torch.Tensor:
    """Random episode starts ``(T, B)``: one at t = 0 for some envs, runs of consecutive resets
    for another, none at all for the last."""
    g = torch.Generator().manual_seed(seed)
    starts = (torch.rand(T, B, generator=g) < 0.2).double()
    starts[0, :2] = 1.0
    starts[: min(T, 3), 2] = 1.0  # consecutive resets from the first step
    if T > 4:
        starts[T // 2 : T // 2 + 3, 3] = 1.0  # consecutive resets in the middle
    starts[:, -1] = 0.0  # one env that never resets: the carry over the whole sequence
    return starts


def core_and_inputs(cls, T: int, layers: int, device: str, seed: int = 0):
    torch.manual_seed(seed)
    core = cls(D, H, layers).double().to(device)
    x = torch.randn(T, B, D, dtype=torch.double, device=device, requires_grad=True)
    h0 = torch.randn(layers, B, H, dtype=torch.double, device=device, requires_grad=True)
    state = RecurrentState(h0, torch.zeros(layers, B, 0, dtype=torch.double, device=device))
    return core, x, state, starts_with_resets(T, seed).to(device)


def outputs_and_gradients(core, run, x, state, starts, seed: int = 1):
    """What ``run`` computes and the gradients of a random linear loss on its outputs and final
    state with respect to the inputs, the initial state and every weight."""
    out, final = run(core, x, state, starts)
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=torch.double).to(out.device)
    w_h = torch.randn(final.h.shape, generator=g, dtype=torch.double).to(out.device)
    loss = (out * w_out).sum() + (final.h * w_h).sum()
    grads = torch.autograd.grad(loss, [x, state.h, *core.parameters()])
    return out.detach(), final.h.detach(), grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("T", [1, 2, 7, 64, 129])
@pytest.mark.parametrize("name", list(CORES))
def test_scan_equals_the_step_by_step_recurrence_with_resets(name, T, layers, device):
    core, x, state, starts = core_and_inputs(CORES[name], T, layers, device, seed=T + layers)
    scan = outputs_and_gradients(core, lambda c, *a: c(*a), x, state, starts)
    steps = outputs_and_gradients(core, step_by_step, x, state, starts)
    torch.testing.assert_close(scan[0], steps[0])  # outputs (T, B, H)
    torch.testing.assert_close(scan[1], steps[1])  # final state (layers, B, H)
    assert len(scan[2]) == 2 + 2 * layers
    for got, want in zip(scan[2], steps[2], strict=True):  # d/dx, d/dh0, d/dW, d/db
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want)


def test_linear_scan_is_exact_with_zero_carries_anywhere():
    """``a_t = 0`` (a reset) at random places, in runs, at the first and last step, and
    carries of exactly 1: the scan equals the loop, with finite gradients and no log of 0."""
    torch.manual_seed(0)
    T = 100
    a = torch.rand(T, 4, 6, dtype=torch.double)
    a[torch.rand(T, 4, 6) < 0.3] = 0.0
    a[0], a[-1], a[40:45] = 0.0, 0.0, 0.0
    a[:, 0, 0] = 1.0  # a running sum: nothing decays
    a.requires_grad_()
    b = torch.randn(T, 4, 6, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(4, 6, dtype=torch.double, requires_grad=True)
    h, expected = h0, []
    for t in range(T):
        h = a[t] * h + b[t]
        expected.append(h)
    expected = torch.stack(expected)
    got = linear_scan(a, b, h0)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(prefix_scan(a, b, h0), expected)  # the plain form, as traced
    w = torch.randn(T, 4, 6, dtype=torch.double)
    for g_got, g_want in zip(
        torch.autograd.grad((got * w).sum(), [a, b, h0]),
        torch.autograd.grad((expected * w).sum(), [a, b, h0]),
        strict=True,
    ):
        assert torch.isfinite(g_got).all()
        torch.testing.assert_close(g_got, g_want)
    # The backward written out (a reverse scan) against finite differences, zeros included.
    small = [t[:9, :2, :3].detach().clone().requires_grad_() for t in (a, b)]
    assert torch.autograd.gradcheck(linear_scan, (*small, h0[:2, :3].detach().requires_grad_()))


@pytest.mark.parametrize("name", list(CORES))
def test_a_reset_forgets_everything_before_it_exactly(name):
    """After an episode start the outputs do not depend on what came before (inputs or initial
    state): bit for bit, and with a gradient of exactly zero to the past."""
    core, x, state, _ = core_and_inputs(CORES[name], 40, 2, "cpu")
    starts = torch.zeros(40, B, dtype=torch.double)
    starts[13] = 1.0
    out, final = core(x, state, starts)
    other_past = torch.cat([torch.randn(13, B, D, dtype=torch.double) * 5, x[13:].detach()])
    other_state = RecurrentState(torch.randn_like(state.h) * 5, state.c)
    out_other, final_other = core(other_past, other_state, starts)
    assert torch.equal(out[13:], out_other[13:]) and torch.equal(final.h, final_other.h)
    fresh = core.initial_state(B).h.double()
    out_fresh, _ = core(x[13:], RecurrentState(fresh, state.c), starts[13:])
    torch.testing.assert_close(out[13:], out_fresh)
    grad_x, grad_h0 = torch.autograd.grad(out[13:].sum() + final.h.sum(), [x, state.h])
    assert not grad_x[:13].any() and not grad_h0.any() and grad_x[13:].any()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", list(CORES))
def test_acting_one_step_at_a_time_equals_the_scan(name, layers):
    """The acting path (T = 1, no gradient), step after step, equals the whole-sequence scan at
    every step, and its last step the scan's last output and final state."""
    core, x, state, starts = core_and_inputs(CORES[name], 33, layers, "cpu")
    whole, final = core(x, state, starts)
    with torch.no_grad():
        s, outputs = state, []
        for t in range(33):
            out, s = core(x[t : t + 1], s, starts[t : t + 1])
            assert out.shape == (1, B, H) and s.h.shape == (layers, B, H)
            outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs), whole.detach())
    torch.testing.assert_close(outputs[-1][0], whole[-1].detach())
    torch.testing.assert_close(s.h, final.h.detach())
    assert s.c.shape == (layers, B, 0)


@pytest.mark.parametrize("name", list(CORES))
def test_batch_entries_do_not_see_each_other(name):
    core, x, state, starts = core_and_inputs(CORES[name], 21, 2, "cpu")
    out, final = core(x, state, starts)
    x2, h2, starts2 = x.detach().clone(), state.h.detach().clone(), starts.clone()
    x2[:, 1:] = torch.randn(21, B - 1, D, dtype=torch.double)
    h2[:, 1:] = 3.0
    starts2[:, 1:] = 1.0 - starts2[:, 1:]
    out2, final2 = core(x2, RecurrentState(h2, state.c), starts2)
    assert torch.equal(out[:, 0], out2[:, 0]) and torch.equal(final.h[:, 0], final2.h[:, 0])
    alone, final_alone = core(
        x[:, :1], RecurrentState(state.h[:, :1], state.c[:, :1]), starts[:, :1]
    )
    torch.testing.assert_close(alone[:, 0], out[:, 0])
    torch.testing.assert_close(final_alone.h[:, 0], final.h[:, 0])


def test_float32_stays_float32_and_a_long_sequence_stays_finite():
    torch.manual_seed(0)
    core = MinGRU(2, 16, 2)
    x = torch.randn(1000, 3, 2)
    out, final = core(x, core.initial_state(3), torch.zeros(1000, 3))
    assert out.dtype == final.h.dtype == torch.float32
    assert torch.isfinite(out).all() and out.shape == (1000, 3, 16)


def test_mingru_is_a_registered_recurrent_agent():
    assert "mingru" in AGENTS and AGENTS["mingru"][0] is MinGRU
    core = make_core("mingru", D, H)
    assert isinstance(core, MinGRU) and core.num_layers == 1 and core.is_recurrent
    assert core.initial_state(B).h.shape == (1, B, H) and core.initial_state(B).c.shape[2] == 0
    agent = make_agent("mingru", D, 2, hidden_size=H, num_layers=2)
    obs, state = torch.randn(B, D), agent.initial_state(B)
    actions, state = agent.act(obs, state, torch.ones(B), deterministic=True)
    assert actions.shape == (B,) and state.h.shape == (2, B, H)

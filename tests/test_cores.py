"""Recurrent cores: the custom LSTM against torch.nn.LSTM, BPTT by hand against autograd,
and step-by-step runs against whole-sequence runs, episode resets included."""

import re

import pytest
import torch
from torch import nn

from agents import (
    GRU,
    LSTM,
    RNN,
    AgentError,
    FrameStackCore,
    MLPCore,
    RecurrentState,
    TorchLSTM,
    make_agent,
    make_core,
)
from agents.lstm import _LSTMLayer, copy_to_nn_lstm

T, B, D, H = 12, 5, 3, 8


def random_starts(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    starts = (torch.rand(T, B, generator=g) < 0.2).double()
    starts[0, 0] = 1.0
    starts[5, :] = 0.0
    return starts


def random_state(layers: int, width: int) -> RecurrentState:
    return RecurrentState(
        torch.randn(layers, B, H, dtype=torch.double, requires_grad=True),
        torch.randn(layers, B, width, dtype=torch.double, requires_grad=True),
    )


# Our gates are stacked i, f, o, g; nn.LSTM's i, f, g, o.
NN_LSTM_GATE_ORDER = torch.cat(
    [torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
)


@pytest.mark.parametrize("layers", [1, 2])
def test_custom_lstm_equals_nn_lstm_outputs_and_gradients(layers):
    torch.manual_seed(0)
    ours = LSTM(D, H, layers).double()
    ref = nn.LSTM(D, H, layers).double()
    copy_to_nn_lstm(ours, ref)
    x = torch.randn(T, B, D, dtype=torch.double, requires_grad=True)
    state = random_state(layers, H)
    out, final = ours(x, state, torch.zeros(T, B, dtype=torch.double))
    ref_out, (ref_h, ref_c) = ref(x, (state.h, state.c))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(final.h, ref_h)
    torch.testing.assert_close(final.c, ref_c)

    weights = torch.randn_like(out)
    ours_params = [*ours.weights, *ours.biases]
    ours_grads = torch.autograd.grad(
        (out * weights).sum() + final.c.sum(), [x, state.h, state.c, *ours_params]
    )
    ref_grads = torch.autograd.grad(
        (ref_out * weights).sum() + ref_c.sum(), [x, state.h, state.c, *ref.parameters()]
    )
    for a, b in zip(ours_grads[:3], ref_grads[:3], strict=True):
        torch.testing.assert_close(a, b)
    # Parameter gradients: reorder our gates to nn.LSTM's and split W into W_hh | W_ih.
    order = NN_LSTM_GATE_ORDER
    for k in range(layers):
        grad_w, grad_b = ours_grads[3 + k][order], ours_grads[3 + layers + k][order]
        ref_w_ih, ref_w_hh, ref_b_ih, ref_b_hh = ref_grads[3 + 4 * k : 7 + 4 * k]
        torch.testing.assert_close(grad_w[:, :H], ref_w_hh)
        torch.testing.assert_close(grad_w[:, H:], ref_w_ih)
        torch.testing.assert_close(grad_b, ref_b_ih)  # one bias here stands for b_ih + b_hh
        torch.testing.assert_close(grad_b, ref_b_hh)


@pytest.mark.parametrize("cut_on_host", [True, False], ids=["cut-at-starts", "cut-every-step"])
@pytest.mark.parametrize("layers", [1, 2])
def test_torch_backend_equals_custom_lstm_with_resets(layers, cut_on_host):
    torch.manual_seed(1)
    ours = LSTM(D, H, layers).double()
    fused = TorchLSTM(D, H, layers).double()
    fused.cut_on_host = cut_on_host  # False: the path a GPU takes, no host read
    fused.load_from(ours)
    x = torch.randn(T, B, D, dtype=torch.double, requires_grad=True)
    state, starts = random_state(layers, H), random_starts()
    out_a, fin_a = ours(x, state, starts)
    out_b, fin_b = fused(x, state, starts)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(fin_a.c, fin_b.c)
    grads_a = torch.autograd.grad(out_a.square().sum(), [x, state.h, state.c])
    grads_b = torch.autograd.grad(out_b.square().sum(), [x, state.h, state.c])
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b)


def test_hand_written_bptt_passes_gradcheck():
    torch.manual_seed(2)
    layer = LSTM(D, H).double()
    keep = (1 - random_starts()).unsqueeze(-1)
    inputs = (
        torch.randn(T, B, D, dtype=torch.double, requires_grad=True),
        torch.randn(B, H, dtype=torch.double, requires_grad=True),
        torch.randn(B, H, dtype=torch.double, requires_grad=True),
        layer.weights[0],
        layer.biases[0],
    )
    assert torch.autograd.gradcheck(
        lambda x, h, c, w, b: _LSTMLayer.apply(x, h, c, keep, w, b), inputs
    )


def test_gru_and_rnn_equal_torch_reference_cells():
    torch.manual_seed(3)
    x = torch.randn(T, B, D, dtype=torch.double)
    no_starts = torch.zeros(T, B, dtype=torch.double)
    gru, ref_gru = GRU(D, H, 2).double(), nn.GRU(D, H, 2).double()
    rnn, ref_rnn = RNN(D, H, 2).double(), nn.RNN(D, H, 2).double()
    with torch.no_grad():
        for k in range(2):
            gru.weights_x[k].copy_(getattr(ref_gru, f"weight_ih_l{k}"))
            gru.weights_h[k].copy_(getattr(ref_gru, f"weight_hh_l{k}"))
            gru.biases_x[k].copy_(getattr(ref_gru, f"bias_ih_l{k}"))
            gru.biases_h[k].copy_(getattr(ref_gru, f"bias_hh_l{k}"))
            rnn.weights_x[k].copy_(getattr(ref_rnn, f"weight_ih_l{k}"))
            rnn.weights_h[k].copy_(getattr(ref_rnn, f"weight_hh_l{k}"))
            rnn.biases[k].copy_(
                getattr(ref_rnn, f"bias_ih_l{k}") + getattr(ref_rnn, f"bias_hh_l{k}")
            )
    torch.testing.assert_close(gru(x, gru.initial_state(B), no_starts)[0], ref_gru(x)[0])
    torch.testing.assert_close(rnn(x, rnn.initial_state(B), no_starts)[0], ref_rnn(x)[0])


CORES = {
    "lstm": lambda: LSTM(D, H, 2),
    "lstm-torch": lambda: TorchLSTM(D, H, 2),
    "gru": lambda: GRU(D, H, 2),
    "rnn": lambda: RNN(D, H, 2),
    "mlp": lambda: MLPCore(D, H),
    "framestack": lambda: FrameStackCore(D, H, 2, frame_stack=4),
    "framestack-k1": lambda: FrameStackCore(D, H, 1, frame_stack=1),
}


@pytest.mark.parametrize("name", list(CORES))
def test_step_by_step_equals_whole_sequence_with_resets(name):
    torch.manual_seed(4)
    core = CORES[name]().double()
    x, starts = torch.randn(T, B, D, dtype=torch.double), random_starts()
    state = core.initial_state(B)
    state = RecurrentState(state.h.double() + 0.5, state.c.double() - 0.5)
    whole, final = core(x, state, starts)
    with torch.no_grad():
        outputs, s = [], state
        for t in range(T):
            out, s = core(x[t : t + 1], s, starts[t : t + 1])
            outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs), whole.detach())
    torch.testing.assert_close(s.h, final.h.detach())


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "framestack"])
def test_episode_start_forgets_everything_before(name):
    torch.manual_seed(5)
    core = CORES[name]().double()
    x = torch.randn(T, B, D, dtype=torch.double)
    starts = torch.zeros(T, B, dtype=torch.double)
    starts[6] = 1.0
    out, _ = core(x, core.initial_state(B), starts)
    fresh = core.initial_state(B)
    fresh = RecurrentState(fresh.h.double(), fresh.c.double())
    out_fresh, _ = core(x[6:], fresh, starts[6:])
    torch.testing.assert_close(out[6:], out_fresh)
    assert not torch.allclose(out[:6], core(x[:6] * 0, fresh, starts[:6])[0])


@pytest.mark.parametrize("shared", [True, False])
def test_actor_critic_state_round_trip_and_predict(shared):
    agent = make_agent("lstm", 2, 2, hidden_size=H, shared_core=shared)
    state = agent.initial_state(3)
    assert state.h.shape == ((1 if shared else 2), 3, H)
    actions, state = agent.predict(torch.zeros(3, 2).numpy(), state, [1, 1, 1], deterministic=True)
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}
    action, _ = agent.predict([0.1, -0.02], deterministic=True)
    assert int(action) in (0, 1)


def test_framestack_sees_the_last_k_observations_zero_padded_at_episode_starts():
    k = 3
    core = FrameStackCore(D, H, 1, frame_stack=k).double()
    x, starts = torch.randn(T, B, D, dtype=torch.double), random_starts(2)
    state = core.initial_state(B)
    past = torch.randn(k - 1, B, D, dtype=torch.double)  # observations before the sequence
    state = RecurrentState(past.transpose(0, 1).reshape(1, B, -1), state.c.double())
    out, _ = core(x, state, starts)
    history = torch.cat([past, x])  # (k-1+T, B, D)
    for b in range(B):
        episode_start = -(k - 1)  # the past frames belong to the episode running at t = 0
        for t in range(T):
            if starts[t, b]:
                episode_start = t
            frames = [
                history[k - 1 + t - j, b] if t - j >= episode_start else torch.zeros(D).double()
                for j in reversed(range(k))
            ]  # oldest first
            expected = core.net(torch.cat(frames))
            torch.testing.assert_close(out[t, b], expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "transformer"}, "unknown agent 'transformer'"),
        ({"name": "gru", "backend": "torch"}, "backend 'torch' is for the lstm agents"),
        ({"name": "lstm", "backend": "jax"}, "unknown backend 'jax'"),
        ({"name": "framestack", "frame_stack": 0}, "frame_stack (k) must be >= 1"),
        ({"name": "lstm", "hidden_size": 0}, "hidden_size must be >= 1"),
        ({"name": "rnn", "num_layers": 0}, "num_layers must be >= 1"),
    ],
)
def test_registry_refuses_unknown_names_and_impossible_sizes(kwargs, message):
    kwargs = {"input_size": D, "hidden_size": H, "num_layers": 1} | kwargs
    with pytest.raises(AgentError, match=re.escape(message)):
        make_core(**kwargs)


def test_lstm2_is_a_stacked_lstm():
    core = make_core("lstm2", D, H, 2)
    assert isinstance(core, LSTM) and core.num_layers == 2
    assert core.initial_state(B).h.shape == (2, B, H)
    # Its depth is its own: built by name alone, it has two layers (other agents: one).
    assert make_core("lstm2", D, H).num_layers == 2 and make_core("lstm", D, H).num_layers == 1
    agent = make_agent("lstm2", D, 2, hidden_size=H)
    assert agent.actor_core.num_layers == 2 and agent.is_recurrent


def test_is_recurrent_means_a_state_kept_between_steps():
    assert [make_agent(name, D, 2).is_recurrent for name in ("mlp", "framestack", "rnn")] == [
        False,
        True,
        True,
    ]


def test_set_forget_bias_opens_the_forget_gate_of_every_layer():
    core = LSTM(D, H, 2).double()
    core.set_forget_bias(30.0)
    for w in core.weights:
        torch.nn.init.zeros_(w)  # gates from their biases alone
    c0 = torch.randn(2, B, H, dtype=torch.double)
    state = RecurrentState(torch.zeros(2, B, H, dtype=torch.double), c0)
    _, final = core(torch.zeros(1, B, D, dtype=torch.double), state, torch.zeros(1, B).double())
    i = torch.sigmoid(torch.stack([b[:H] for b in core.biases]))[:, None]  # (L, 1, H)
    g = torch.tanh(torch.stack([b[3 * H :] for b in core.biases]))[:, None]
    torch.testing.assert_close(final.c, c0 + i * g)  # f = sigmoid(30) = 1: the cell is kept

"""Named agents: one place that turns an agent name and sizes into a policy."""

from __future__ import annotations

from torch import nn

from agents.actor_critic import ActorCritic
from agents.cores import GRU, RNN, Core, FrameStackCore, MLPCore
from agents.lstm import LSTM, TorchLSTM
from agents.scan import MinGRU

# name -> (core class for the "custom" backend, description)
AGENTS: dict[str, tuple[type[Core], str]] = {
    "mlp": (MLPCore, "feedforward: sees only the current observation"),
    "framestack": (FrameStackCore, "feedforward over the last k observations (--frame-stack k)"),
    "rnn": (RNN, "vanilla (Elman) RNN, h = tanh(W_xh x + W_hh h + b)"),
    "gru": (GRU, "gated recurrent unit"),
    "mingru": (MinGRU, "minGRU: gates from the input only, a parallel scan over time"),
    "lstm": (LSTM, "LSTM from the lecture's gate equations (fused weight over [h; x])"),
    "lstm2": (LSTM, "stacked LSTM, the lecture's 'going deep' (2 layers by default)"),
}
LSTM_AGENTS = ("lstm", "lstm2")
# Layers of an agent whose name says how deep it is (every other agent: 1).
DEFAULT_LAYERS = {"lstm2": 2}
BACKENDS = ("custom", "torch")
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class AgentError(ValueError):
    """An agent that cannot be built as asked."""


def make_core(
    name: str,
    input_size: int,
    hidden_size: int,
    num_layers: int | None = None,
    backend: str = "custom",
    frame_stack: int = 4,
) -> Core:
    """The core of agent ``name``; ``backend="torch"`` computes an LSTM with ``torch.nn.LSTM``.

    ``num_layers=None`` gives the agent its own depth (``lstm2``: 2, every other agent: 1).
    ``frame_stack`` is the number of observations a ``framestack`` core sees (ignored otherwise).
    """
    if name not in AGENTS:
        raise AgentError(f"unknown agent {name!r}; choose from {', '.join(AGENTS)}")
    if num_layers is None:
        num_layers = DEFAULT_LAYERS.get(name, 1)
    if backend not in BACKENDS:
        raise AgentError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    for size, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if value < 1:
            raise AgentError(f"{size} must be >= 1, got {value}")
    core_class = AGENTS[name][0]
    if backend == "torch":
        if name not in LSTM_AGENTS:
            raise AgentError(f"backend 'torch' is for the lstm agents, not {name!r}")
        core_class = TorchLSTM
    if core_class is FrameStackCore:
        if frame_stack < 1:
            raise AgentError(f"frame_stack (k) must be >= 1, got {frame_stack}")
        return FrameStackCore(input_size, hidden_size, num_layers, frame_stack)
    return core_class(input_size, hidden_size, num_layers)


def make_agent(
    name: str,
    obs_dim: int,
    num_actions: int,
    hidden_size: int = 64,
    num_layers: int | None = None,
    backend: str = "custom",
    shared_core: bool = True,
    pi_hidden: tuple[int, ...] = (64,),
    vf_hidden: tuple[int, ...] = (64,),
    activation: str = "relu",
    normalize_obs: bool = True,
    frame_stack: int = 4,
    continuous: bool = False,
    gsde: bool = False,
    log_std_init: float = 0.0,
) -> ActorCritic:
    """Build agent ``name`` for an env with ``obs_dim`` observations and ``num_actions`` actions
    (``continuous``: a Box of that many dimensions, explored by gSDE with ``gsde``, its
    Gaussian's log-std starting at ``log_std_init``;
    ``num_layers=None``: the agent's own depth, see :func:`make_core`)."""
    if activation not in ACTIVATIONS:
        raise AgentError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")

    def core() -> Core:
        return make_core(name, obs_dim, hidden_size, num_layers, backend, frame_stack)

    return ActorCritic(
        core(),
        num_actions,
        critic_core=None if shared_core else core(),
        pi_hidden=pi_hidden,
        vf_hidden=vf_hidden,
        activation=ACTIVATIONS[activation],
        normalize_obs=normalize_obs,
        continuous=continuous,
        gsde=gsde,
        log_std_init=log_std_init,
    )

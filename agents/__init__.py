"""Policies: recurrent cores, actor-critic heads and a registry of named agents."""

from agents.action_heads import Categorical, DiagGaussian, StateDependentNoise, sample_categorical
from agents.actor_critic import ActorCritic
from agents.cores import GRU, RNN, Core, FrameStackCore, MLPCore, RecurrentState
from agents.lstm import LSTM, TorchLSTM
from agents.normalize import RunningNorm
from agents.registry import AGENTS, BACKENDS, AgentError, make_agent, make_core
from agents.scan import MinGRU, MinLSTM

__all__ = [
    "AGENTS",
    "BACKENDS",
    "GRU",
    "LSTM",
    "RNN",
    "ActorCritic",
    "AgentError",
    "Categorical",
    "Core",
    "DiagGaussian",
    "FrameStackCore",
    "MLPCore",
    "MinGRU",
    "MinLSTM",
    "RecurrentState",
    "RunningNorm",
    "StateDependentNoise",
    "TorchLSTM",
    "make_agent",
    "make_core",
    "sample_categorical",
]

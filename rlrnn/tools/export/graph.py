"""The exported policy as torch modules: one acting step as a pure function (:class:`PolicyStep`),
the stateful TorchScript module around it (:class:`StatefulPolicy`), and the writers of
``policy.onnx`` and ``policy.pt`` (:func:`write_onnx`, :func:`write_torchscript`).

The step is what ``ActorCritic.act`` computes for one step of observations, deterministic:
``(obs[B, ...], h[L, B, H], c[L, B, C], episode_start[B]) -> (action[B], logits[B, A], h, c)``,
with everything a caller could get wrong inside it: the one-hot of a Discrete observation, the
observation normaliser, the frame-stack window (it is the frame stack's state ``h``) and the
reset where ``episode_start`` is 1, made *before* the observation is consumed, as in the cores.
Only the actor is exported: with separate actor and critic cores the state is the actor's layers.
"""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from agents import ActorCritic, RecurrentState

OPSET = 17
INPUTS = ("obs", "h_in", "c_in", "episode_start")
OUTPUTS = ("action", "logits", "h_out", "c_out")


class StateSpec(NamedTuple):
    """One state tensor of the exported step, shaped ``(layers, B, width)``."""

    name: str  # "h" or "c"
    layers: int
    width: int

    @property
    def present(self) -> bool:
        """Whether the tensor holds numbers (a GRU's ``c``, an MLP's state hold none)."""
        return self.layers > 0 and self.width > 0


def state_specs(policy: ActorCritic) -> tuple[StateSpec, StateSpec]:
    """The shapes of the actor's ``h`` and ``c`` (batch axis aside)."""
    h, c = policy.actor_core.initial_state(1)
    return StateSpec("h", h.shape[0], h.shape[2]), StateSpec("c", c.shape[0], c.shape[2])


class PolicyStep(nn.Module):
    """One deterministic acting step of ``policy``'s actor, a pure function of its inputs.

    ``space`` is the env's observation space: a ``Box`` takes float observations ``(B, D)``
    (flattened), a ``Discrete`` integer ids ``(B,)`` and a ``MultiDiscrete`` integer ids
    ``(B, K)`` (its components flattened), one-hot encoded here as :mod:`envs.spaces` encodes
    them for training.
    """

    def __init__(self, policy: ActorCritic, space: spaces.Space) -> None:
        super().__init__()
        self.obs_norm, self.core, self.pi_head = policy.obs_norm, policy.actor_core, policy.pi_head
        self.continuous = policy.continuous  # Box actions: the action is the Gaussian's mean
        self.discrete = isinstance(space, spaces.Discrete | spaces.MultiDiscrete)
        if self.discrete:
            if isinstance(space, spaces.Discrete):
                sizes, starts = [int(space.n)], [int(space.start)]
            else:
                sizes, starts = space.nvec.ravel().tolist(), space.start.ravel().tolist()
            # Column j of the one-hot is 1 when component[j] of the observation equals value[j].
            component = np.repeat(np.arange(len(sizes)), sizes)
            value = np.concatenate([s + np.arange(n) for n, s in zip(sizes, starts, strict=True)])
            self.register_buffer("component", torch.as_tensor(component, dtype=torch.long))
            self.register_buffer("value", torch.as_tensor(value, dtype=torch.long))
            self.register_buffer("first", torch.as_tensor(starts, dtype=torch.long))  # (K,)
            self.single = isinstance(space, spaces.Discrete)  # ids (B,), else (B, K)

    def encode(self, obs: Tensor) -> Tensor:
        """The float ``(B, D)`` observation the policy was trained on."""
        if not self.discrete:
            return obs
        ids = obs.reshape(obs.shape[0], -1)  # (B,) or (B, K) -> (B, K)
        return (ids.index_select(1, self.component) == self.value).to(torch.float32)  # (B, D)

    def forward(
        self, obs: Tensor, h: Tensor, c: Tensor, episode_start: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = self.obs_norm(self.encode(obs))[None]  # (B, D) -> (1, B, D)
        starts = episode_start.to(torch.float32)[None]  # (B,) -> (1, B)
        features, state = self.core(x, RecurrentState(h, c), starts)
        logits = self.pi_head(features[0])  # (1, B, H) -> (B, A)
        action = logits if self.continuous else logits.argmax(-1)  # (B, A) or (B,)
        return action, logits, state.h, state.c


class OnnxStep(nn.Module):
    """:class:`PolicyStep` with inputs only for the state tensors that hold numbers:
    ``(obs, [h_in], [c_in], episode_start) -> (action, logits, [h_out], [c_out])``."""

    def __init__(self, step: PolicyStep, specs: tuple[StateSpec, StateSpec]) -> None:
        super().__init__()
        self.step, self.specs = step, specs

    def forward(self, obs: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        given, episode_start = list(rest[:-1]), rest[-1]
        state = [
            given.pop(0)
            if s.present
            else obs.new_zeros((s.layers, obs.shape[0], s.width), dtype=torch.float32)
            for s in self.specs
        ]  # an empty tensor where the core keeps nothing: the core passes it through unused
        action, logits, h, c = self.step(obs, state[0], state[1], episode_start.to(torch.float32))
        kept = [t for t, s in zip((h, c), self.specs, strict=True) if s.present]
        return (action, logits, *kept)


class StatefulPolicy(nn.Module):
    """The TorchScript module users load in Python or C++ (``torch::jit::load``).

    ``act(obs)`` returns the actions for one step of ``B`` observations and keeps the state;
    ``reset()`` starts new episodes at the next ``act`` (so does a change of ``B``);
    ``act_starts(obs, episode_start)`` restarts only the environments flagged 1;
    ``logits()`` gives the last step's logits; ``forward(obs, h, c, episode_start)`` is the
    pure step, ``(action, logits, h, c)``, for callers who keep the state themselves.
    """

    def __init__(self, step: nn.Module, specs: tuple[StateSpec, StateSpec], actions: int) -> None:
        super().__init__()
        self.step = step
        self.h_layers, self.h_width = specs[0].layers, specs[0].width
        self.c_layers, self.c_width = specs[1].layers, specs[1].width
        self.h = torch.zeros(self.h_layers, 0, self.h_width)
        self.c = torch.zeros(self.c_layers, 0, self.c_width)
        self.last_logits = torch.zeros(0, actions)
        self.fresh = True

    def forward(
        self, obs: Tensor, h: Tensor, c: Tensor, episode_start: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.step(obs, h, c, episode_start)

    @torch.jit.export
    def reset(self) -> None:
        self.fresh = True

    @torch.jit.export
    def act_starts(self, obs: Tensor, episode_start: Tensor) -> Tensor:
        batch = obs.shape[0]
        if self.fresh or self.h.shape[1] != batch:
            self.h = torch.zeros(self.h_layers, batch, self.h_width)
            self.c = torch.zeros(self.c_layers, batch, self.c_width)
        action, logits, h, c = self.step(obs, self.h, self.c, episode_start.to(torch.float32))
        self.h, self.c, self.last_logits, self.fresh = h, c, logits, False
        return action

    @torch.jit.export
    def act(self, obs: Tensor) -> Tensor:
        starts = torch.full([obs.shape[0]], 1.0 if self.fresh else 0.0)
        if not self.fresh and self.h.shape[1] != obs.shape[0]:
            starts = torch.ones(obs.shape[0])  # another batch: new episodes
        return self.act_starts(obs, starts)

    @torch.jit.export
    def logits(self) -> Tensor:
        return self.last_logits


def example_inputs(step: PolicyStep, specs: tuple[StateSpec, ...], batch: int = 2) -> tuple:
    """Inputs of :class:`PolicyStep` for ``batch`` environments (for tracing and checks)."""
    if step.discrete:
        obs = step.first.repeat(batch, 1)  # (K,) -> (B, K): each component's first id
        obs = obs[:, 0] if step.single else obs
    else:
        obs = torch.zeros(batch, step.obs_norm.mean.numel())
    h, c = (torch.zeros(s.layers, batch, s.width) for s in specs)
    return obs, h, c, torch.ones(batch)


@torch.no_grad()
def write_torchscript(step: PolicyStep, specs: tuple[StateSpec, StateSpec], out) -> nn.Module:
    """Trace the step, wrap it in :class:`StatefulPolicy`, script and save it to ``out``."""
    # The tracer's notes and torch.jit's deprecation hidden: the parity checks, not the
    # tracer, say whether the module is right, and libtorch still loads TorchScript.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(step, example_inputs(step, specs), check_trace=False)
        traced.requires_grad_(False)  # acting keeps no autograd history between steps
        actions = step.pi_head[-1].out_features
        module = torch.jit.script(StatefulPolicy(traced, specs, actions))
        torch.jit.save(module, str(out))
    return module


@torch.no_grad()
def onnx_bytes(step: PolicyStep, specs: tuple[StateSpec, StateSpec]) -> bytes:
    """The ONNX model of the step (opset :data:`OPSET`, a dynamic batch axis ``B``)."""
    obs, h, c, starts = example_inputs(step, specs)
    present = [s.present for s in specs]
    args = (obs, *(t for t, p in zip((h, c), present, strict=True) if p), starts)
    inputs = [INPUTS[0], *(n for n, p in zip(INPUTS[1:3], present, strict=True) if p), INPUTS[3]]
    outputs = [*OUTPUTS[:2], *(n for n, p in zip(OUTPUTS[2:], present, strict=True) if p)]
    axes = {name: {1 if name[0] in "hc" else 0: "B"} for name in (*inputs, *outputs)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation, the tracer's notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            OnnxStep(step, specs).eval(),
            args,
            buffer,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript-based exporter: no onnxscript needed
        )
    return _with_every_input(buffer.getvalue(), inputs)


def _with_every_input(model_bytes: bytes, inputs: list[str]) -> bytes:
    """The model with every input of the signature, in order: the exporter drops an input the
    outputs do not depend on (a feedforward core's ``episode_start``), and a caller should not
    need to know which core it runs."""
    import onnx  # the export extra: imported when an ONNX file is written

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    if [i.name for i in graph.input] == inputs:
        return model_bytes
    declared = {i.name: i for i in graph.input}
    missing = {"episode_start": onnx.helper.make_tensor_value_info(
        "episode_start", onnx.TensorProto.FLOAT, ["B"]
    )}  # fmt: skip
    ordered = [declared.get(name) or missing[name] for name in inputs]
    del graph.input[:]
    graph.input.extend(ordered)
    return model.SerializeToString()

"""Deploy what you train: a run's policy as files that run without rlrnn (``rlrnn export``).

An export folder holds, for the formats asked for:

- ``policy.onnx``: one acting step as a pure function with a dynamic batch axis ``B``,
  ``(obs, [h_in], [c_in], episode_start) -> (action, logits, [h_out], [c_out])``; only the state
  tensors the core keeps are there (an LSTM's ``h`` and ``c``, a GRU's or an RNN's ``h``, a
  frame stack's window as ``h``, none for ``mlp``). The observation normaliser, a Discrete
  observation's one-hot and the reset where ``episode_start`` is 1 (the state zeroed *before*
  the observation is consumed) are inside the graph; ``action`` is the argmax of ``logits``
  (for Box actions: the Gaussian's mean, ``logits`` itself, unclipped).
- ``policy.pt``: a TorchScript module with ``reset()``, ``act(obs)``, ``act_starts(obs,
  episode_start)``, ``logits()`` and the pure step as ``forward`` (:mod:`export_graph`).
- ``policy.json``: the env, the observation layout, the action space, the agent, the state
  tensors' names and shapes, the inputs and outputs, rlrnn's version and the checkpoint's SHA-256.

The folder is written under a temporary name beside the target and renamed at the end: a refused
or failed export leaves nothing behind. Stable-Baselines3 reference runs are refused.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from agents import ActorCritic
from envs.batched import action_bounds, check_env_id, observation_entries, observation_space
from rlrnn import __version__
from rlrnn.errors import UsageError
from rlrnn.files import check_can_create, os_error, path_status, sha256, write_failed
from rlrnn.learning.config import SB3_AGENTS
from rlrnn.learning.fields import check_argument
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.checkpoint import checkpoint_config, checkpoint_path, read_checkpoint
from rlrnn.runs.loading import CHECKPOINTS, load_checkpoint
from rlrnn.tools.export.graph import (
    OPSET,
    PolicyStep,
    StateSpec,
    example_inputs,
    onnx_bytes,
    state_specs,
    write_torchscript,
)

FORMATS = ("onnx", "torchscript", "all")
FILES = {"onnx": "policy.onnx", "torchscript": "policy.pt"}
SIDECAR = "policy.json"
SIDECAR_FORMAT = "rlrnn-policy"
WHAT = "output folder"
EXTRA = 'pip install -e ".[export]" (or: pip install onnx onnxruntime)'


def export(
    run: Path | str,
    out: Path | str,
    format: str = "all",
    checkpoint: str = "best",
    env_id: str | None = None,
) -> Path:
    """Export the policy of ``run`` (a run folder, whose ``<checkpoint>.pt`` is read: best,
    final or last; or a checkpoint file) as ``format`` (onnx, torchscript or all) into the new
    or empty folder ``out``; returns ``out``. ``env_id`` trusts a ``module:EnvId`` the
    checkpoint names (as ``load_agent``'s does). Every mistake is a UsageError (an env rlrnn
    cannot use an :class:`envs.EnvError`) raised before anything is written."""
    for name, value in (("run", run), ("out", out)):
        if not isinstance(value, str | os.PathLike):
            raise UsageError(f"{name} must be a path, got {type(value).__name__}")
    check_argument(format, str, "format")
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    formats = ("onnx", "torchscript") if format == "all" else (format,)
    if env_id is not None:
        check_env_id(check_argument(env_id, str, "env_id"))
    target = check_out(Path(out))
    path = checkpoint_path(Path(run), checkpoint)
    agent = checkpoint_config(read_checkpoint(path), path).agent.agent
    if agent in SB3_AGENTS:
        raise UsageError(
            f"{path} is a {agent} run, a Stable-Baselines3 reference agent: rlrnn exports its own"
            " agents (SB3 documents its own export)"
        )
    if "onnx" in formats:
        need_onnx()
    policy, config, _ = load_checkpoint(path, env_id=env_id)
    if not isinstance(policy, ActorCritic):  # the loader's contract, checked where relied on
        raise UsageError(f"{path}: a {agent} policy cannot be exported")
    space = observation_space(env_id or config.env_id)
    with torch_threads(config.torch_threads), torch.no_grad():
        step = PolicyStep(policy.eval(), space).eval()
        specs = state_specs(policy)
        sidecar = describe(policy, config, path, space, specs, formats)
        with new_folder(target) as folder:
            if "onnx" in formats:
                write_onnx(step, specs, folder / FILES["onnx"])
            if "torchscript" in formats:
                module = write_torchscript(step, specs, folder / FILES["torchscript"])
                check_same(step, specs, lambda *x: module(*x)[1].numpy(), "TorchScript module")
            (folder / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return Path(out)


def need_onnx() -> None:
    """Refuse ONNX when the export extra is not installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError(f"writing ONNX needs the onnx package: {EXTRA}") from None


def write_onnx(step: PolicyStep, specs: tuple[StateSpec, StateSpec], path: Path) -> None:
    """The ONNX model of ``step``, checked by ``onnx.checker`` and, where onnxruntime is
    installed, run against the torch step."""
    import onnx

    data = onnx_bytes(step, specs)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])

        def run(obs: Tensor, h: Tensor, c: Tensor, starts: Tensor) -> np.ndarray:
            feeds = {"obs": obs.numpy(), "episode_start": starts.numpy()}
            present = [(s, x) for s, x in zip(specs, (h, c), strict=True) if s.present]
            feeds |= {f"{s.name}_in": x.numpy() for s, x in present}
            return session.run(["logits"], feeds)[0]

        check_same(step, specs, run, "ONNX graph")
    path.write_bytes(data)


def check_same(
    step: PolicyStep,
    specs: tuple[StateSpec, StateSpec],
    run: Callable[[Tensor, Tensor, Tensor, Tensor], np.ndarray],
    what: str,
) -> None:
    """A few steps of an exported ``run`` (inputs -> logits) against the torch step, with
    resets: a file that differs is an exporter's bug, refused here rather than met by a user."""
    obs, h, c, _ = example_inputs(step, specs, batch=3)
    generator = torch.Generator().manual_seed(0)
    for k in range(4):
        if not step.discrete:
            obs = torch.randn(obs.shape, generator=generator)
        starts = torch.tensor([1.0, float(k == 2), 0.0]) if k else torch.ones(3)
        expected = step(obs, h, c, starts)
        if not np.allclose(run(obs, h, c, starts), expected[1].numpy(), atol=1e-4):
            raise RuntimeError(f"the exported {what} differs from the policy (an exporter bug)")
        h, c = expected[2], expected[3]


def check_out(out: Path) -> Path:
    """The folder to write (``out``, or where a link the user named points): refused unless it
    is a new or empty folder that can be made there."""
    status = path_status(out, WHAT)
    if status is None:
        return check_can_create(out, WHAT)
    if not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{WHAT} {out} is a file, not a folder")
    try:
        with os.scandir(out) as entries:
            empty = next(entries, None) is None
    except OSError as e:
        raise UsageError(f"cannot read {WHAT} {out}: {e.strerror}") from None
    if not empty:
        raise UsageError(
            f"{WHAT} {out} is not empty: rlrnn export writes a new folder (name another, or"
            " empty this one)"
        )
    target = Path(os.path.realpath(out))  # a link the user named: write where it points
    check_can_create(target.parent, WHAT)
    return target


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, innermost first."""
    missing = []
    parent = path.parent
    while path_status(parent, WHAT) is None and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


@contextmanager
def new_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` if the block succeeds; on
    any failure it is removed, with the folders made for it."""
    made = _missing_parents(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as e:
        _remove(made)
        raise UsageError(f"cannot write {WHAT} {target}: {e.strerror}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        folder.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the folder from others
        yield folder
        os.rename(folder, target)  # replaces an empty folder, never a full one
    except BaseException as e:
        shutil.rmtree(folder, ignore_errors=True)
        _remove(made)
        failed = os_error(e) if isinstance(e, Exception) else None
        if failed is not None and not isinstance(e, UsageError):
            raise write_failed(target, failed) from None
        raise


def _remove(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


STATE_MEANING = {
    "framestack": {"h": "the last frame_stack - 1 observations, oldest first, normalised"},
    "lstm": {"h": "hidden state", "c": "cell state"},
}


def describe(
    policy: ActorCritic,
    config: Any,
    path: Path,
    space: spaces.Space,
    specs: tuple[StateSpec, StateSpec],
    formats: tuple[str, ...],
) -> dict[str, Any]:
    """The sidecar ``policy.json``."""
    a = config.agent
    kind = "lstm" if a.agent.startswith("lstm") else a.agent
    state = [
        {
            "name": s.name,
            "input": f"{s.name}_in",
            "output": f"{s.name}_out",
            "shape": [s.layers, "B", s.width],
            "dtype": "float32",
            "meaning": STATE_MEANING.get(kind, {}).get(s.name, "hidden state"),
        }
        for s in specs
        if s.present
    ]
    discrete = isinstance(space, spaces.Discrete | spaces.MultiDiscrete)
    if isinstance(space, spaces.Discrete):
        obs_shape: list[Any] = ["B"]
    else:
        obs_shape = ["B", len(space.nvec.ravel()) if discrete else policy.obs_dim]
    obs = {"name": "obs", "shape": obs_shape, "dtype": "int64" if discrete else "float32"}
    flags = {"name": "episode_start", "shape": ["B"], "dtype": "float32"}
    if policy.continuous:  # the Gaussian's mean: the deterministic action, clipped by the user
        action = {"name": "action", "shape": ["B", policy.num_actions], "dtype": "float32"}
        low, high = action_bounds(config.env_id)
        meaning = {"space": "Box", "dim": policy.num_actions, "low": low, "high": high}
        meaning["action"] = "the Gaussian's mean (logits); clip it to [low, high]"
    else:
        action = {"name": "action", "shape": ["B"], "dtype": "int64"}
        meaning = {"space": "Discrete", "n": policy.num_actions, "action": "argmax of logits"}
    logits = {"name": "logits", "shape": ["B", policy.num_actions], "dtype": "float32"}
    return {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "rlrnn_version": __version__,
        "checkpoint": {"path": str(path), "sha256": sha256(path)},
        "env_id": config.env_id,
        "observation": {
            "space": str(space),
            "dim": policy.obs_dim,
            "entries": observation_entries(config.env_id),
            "encoding": "one-hot of the integer ids, inside the graph" if discrete else "flat",
            "normalised": "inside the graph" if a.normalize_obs else "no",
        },
        "action": meaning,
        "agent": {
            "core": a.agent,
            "backend": a.backend,
            "layers": policy.actor_core.num_layers,
            "hidden_size": a.hidden_size,
            "frame_stack": a.frame_stack if a.agent == "framestack" else None,
            "pi_hidden": list(a.pi_hidden),
            "activation": a.activation,
            "exported": "the actor (policy head); the value head is left out",
        },
        "state": state,
        "inputs": [obs, *({"name": s["input"], **_tensor(s)} for s in state), flags],
        "outputs": [action, logits, *({"name": s["output"], **_tensor(s)} for s in state)],
        "reset": "where episode_start is 1 the state is zeroed before obs is consumed",
        "files": {f: FILES[f] for f in formats},
        "onnx_opset": OPSET if "onnx" in formats else None,
        "torchscript": {
            "methods": ["reset()", "act(obs)", "act_starts(obs, episode_start)", "logits()"],
            "forward": "(obs, h, c, episode_start) -> (action, logits, h, c)",
            "h_shape": [specs[0].layers, "B", specs[0].width],
            "c_shape": [specs[1].layers, "B", specs[1].width],
        }
        if "torchscript" in formats
        else None,
    }


def _tensor(state: dict[str, Any]) -> dict[str, Any]:
    return {"shape": state["shape"], "dtype": state["dtype"]}

"""Deploy what you train: an exported policy (ONNX through onnxruntime, TorchScript) acts as the
torch agent does, step for step, with resets, at batch 1 and 64; the numpy-only example balances
gymnasium's cart-pole with the same returns as rlrnn's evaluation on the same seeds; every
refusal is one line, exit code 2, and leaves nothing behind."""

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.batched import env_sizes, observation_space
from envs.spaces import encode
from rlrnn import evaluate, export, load_agent
from rlrnn.errors import UsageError
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.runs.checkpoint import save_checkpoint
from rlrnn.runs.loading import build_agent

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed (.[export])")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hostile"))  # spaces_envs: envs with other spaces
import spaces_envs  # noqa: E402, F401  (registers MultiDiscreteObs-v0, as --env would)

EXAMPLE = ROOT / "examples" / "deploy_onnx.py"
EPISODE = 500  # steps per episode of the parity checks; three episodes each
TIE = 1e-5  # logits closer than this may argmax either way on another runtime


def session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def saved_agent(tmp_path: Path, agent: AgentConfig, env_id: str = "PositionOnlyCartPole-v1"):
    """A small agent built as a checkpoint builds it, with a normaliser that is not the identity
    and logits of order 1 (a fresh policy head's are ~0.01: every step a near tie); saved."""
    config = RunConfig(agent=agent, env_id=env_id)
    obs_dim, actions = env_sizes(env_id)
    torch.manual_seed(0)
    policy = build_agent(config, obs_dim, actions)
    with torch.no_grad():
        norm = policy.obs_norm
        norm.mean.copy_(torch.randn(obs_dim) * 0.1)
        norm.var.copy_(torch.rand(obs_dim) * 0.05 + 0.01)
        norm.inv_std.copy_(torch.rsqrt(norm.var + norm.eps))
        torch.nn.init.orthogonal_(policy.pi_head[-1].weight, gain=1.0)
    path = tmp_path / "agent.pt"
    save_checkpoint(path, policy, config)
    return policy.eval(), path


def episode_starts(batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Three episodes of EPISODE steps, with some environments restarting in the middle."""
    starts = (torch.rand(3 * EPISODE, batch, generator=generator) < 0.02).float()
    starts[::EPISODE] = 1.0
    return list(starts)


def assert_same_step(torch_logits, torch_action, logits, action, where: str) -> int:
    """Logits within 1e-5 and the same action wherever the torch logits are not a near tie;
    returns the number of near ties (either action is right there)."""
    np.testing.assert_allclose(logits, torch_logits, rtol=0, atol=1e-5, err_msg=where)
    top2 = np.sort(torch_logits, axis=-1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > TIE
    assert (action == torch_action)[decided].all(), where
    return int((~decided).sum())


def play_and_compare(policy, folder: Path, batch: int, space: gym.Space | None = None) -> None:
    """Step the torch agent, the ONNX graph and the TorchScript module side by side, each
    keeping its own state, and compare actions, logits and states at every step; with a
    Discrete or MultiDiscrete ``space`` the exports get its integer ids, the agent their
    one-hot."""
    sidecar = json.loads((folder / "policy.json").read_text())
    onnx = session(folder / "policy.onnx")
    module = torch.jit.load(str(folder / "policy.pt"))
    assert [i.name for i in onnx.get_inputs()] == [i["name"] for i in sidecar["inputs"]]
    assert [i.shape for i in onnx.get_inputs()] == [i["shape"] for i in sidecar["inputs"]]
    assert [o.name for o in onnx.get_outputs()] == [o["name"] for o in sidecar["outputs"]]
    generator = torch.Generator().manual_seed(batch)
    state = policy.initial_state(batch)
    onnx_state = {
        s["input"]: np.full([batch if d == "B" else d for d in s["shape"]], 7.0, np.float32)
        for s in sidecar["state"]
    }  # anything: the first step starts an episode
    if space is not None:
        space.seed(batch)
    ties = 0
    for t, starts in enumerate(episode_starts(batch, generator)):
        if space is not None:
            ids = np.stack([space.sample() for _ in range(batch)]).astype(np.int64)
            obs, fed = torch.as_tensor(encode(space, ids)), torch.as_tensor(ids)
        else:
            obs = torch.randn(batch, 2, generator=generator) * torch.tensor([0.3, 0.05])
            fed = obs
        with torch.no_grad():
            torch_logits = policy(obs[None], state, starts[None])[0][0].numpy()
        action, state = policy.act(obs, state, starts, deterministic=True)
        action = action.numpy()
        where = f"batch {batch}, step {t}"

        out = onnx.run(None, {"obs": fed.numpy(), **onnx_state, "episode_start": starts.numpy()})
        ties += assert_same_step(torch_logits, action, out[1], out[0], "onnx " + where)
        assert (out[0] == out[1].argmax(-1)).all()
        onnx_state = dict(zip(onnx_state, out[2:], strict=True))
        for s, value in zip(sidecar["state"], out[2:], strict=True):
            layers = s["shape"][0]
            expected = getattr(state, s["name"])[:layers].numpy()
            np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5, err_msg=where)

        if batch == 1 and starts.all():  # the stateful module as a single-env user runs it
            module.reset()
            script_action = module.act(fed)
        else:
            script_action = module.act_starts(fed, starts)
        logits = module.logits().numpy()
        assert_same_step(torch_logits, action, logits, script_action.numpy(), "ts " + where)
    assert ties <= 0.01 * 3 * EPISODE * batch  # the check compares the action at nearly every step


AGENTS = {
    "mlp": AgentConfig(agent="mlp", hidden_size=16),
    "framestack": AgentConfig(agent="framestack", hidden_size=16, frame_stack=3),
    "rnn": AgentConfig(agent="rnn", hidden_size=16),
    "gru": AgentConfig(agent="gru", hidden_size=16),
    "mingru": AgentConfig(agent="mingru", hidden_size=16, num_layers=2),
    "lstm": AgentConfig(agent="lstm", hidden_size=16),
    "lstm2": AgentConfig(agent="lstm2", hidden_size=16, num_layers=2),
    "lstm-torch-backend": AgentConfig(agent="lstm", hidden_size=16, backend="torch"),
    "gru-own-critic": AgentConfig(agent="gru", hidden_size=16, shared_core=False),
}


@pytest.mark.parametrize("name", AGENTS)
def test_exported_policies_act_as_the_torch_agent_step_for_step(tmp_path, name):
    policy, checkpoint = saved_agent(tmp_path, AGENTS[name])
    folder = export(checkpoint, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["policy.json", "policy.onnx", "policy.pt"]
    sidecar = json.loads((folder / "policy.json").read_text())
    assert sidecar["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert sidecar["env_id"] == "PositionOnlyCartPole-v1" and sidecar["action"]["n"] == 2
    assert sidecar["observation"]["entries"] == ["cart position", "pole angle"]
    layers = policy.actor_core.state_layers
    names = {"mlp": [], "framestack": ["h"], "rnn": ["h"], "gru": ["h"], "mingru": ["h"]}
    assert [s["name"] for s in sidecar["state"]] == names.get(AGENTS[name].agent, ["h", "c"])
    assert all(s["shape"][:2] == [layers, "B"] for s in sidecar["state"])
    for batch in (1, 64):
        play_and_compare(policy, folder, batch)


@pytest.mark.parametrize(
    "env_id, agent, obs_shape",
    [
        ("FrozenLake-v1", "gru", ["B"]),  # Discrete(16): ids (B,)
        ("spaces_envs:MultiDiscreteObs-v0", "framestack", ["B", 2]),  # [2, 3] from [0, 1]
    ],
)
def test_discrete_observations_are_one_hot_encoded_inside_the_graph(
    tmp_path, env_id, agent, obs_shape
):
    policy, checkpoint = saved_agent(tmp_path, AGENTS[agent], env_id=env_id)
    folder = export(checkpoint, tmp_path / "export")
    sidecar = json.loads((folder / "policy.json").read_text())
    assert sidecar["inputs"][0] == {"name": "obs", "shape": obs_shape, "dtype": "int64"}
    assert sidecar["observation"]["dim"] == policy.obs_dim
    space = observation_space(env_id)
    for batch in (1, 8):
        play_and_compare(policy, folder, batch, space)


def run_example(*args: str, block: bool = True) -> subprocess.CompletedProcess:
    """The example as a user runs it; with ``block`` torch, rlrnn, agents and envs cannot be
    imported (it must need none of them)."""
    blocked = ["torch", "rlrnn", "agents", "envs"] if block else []
    code = (
        f"import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r}));"
        f" sys.argv = {[str(EXAMPLE), *args]!r};"
        f" runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/"
    )


def test_the_example_balances_with_the_returns_rlrnn_evaluates_on_the_same_seeds(
    tiny_run, tmp_path, cli
):
    run = tiny_run("lstm")
    out = tmp_path / "deploy"
    assert cli(["export", str(run), "--checkpoint", "final", "--out", str(out)]) == 0
    played = run_example(str(out), "123")
    assert played.returncode == 0, played.stderr
    returns = [float(r) for r in played.stdout.split("returns:")[1].split("(")[0].split()]
    agent, _ = load_agent(run, "final")
    # gymnasium's own env behind the batched interface: episode i seeded 123 + i, as in the example
    expected = evaluate(agent, "envs:PositionOnlyCartPole-v1", episodes=10, seed=123).returns
    assert returns == expected.tolist()
    assert len(set(returns)) > 1  # episodes that differ: the seeds reach the env


def test_the_example_refuses_a_sidecar_whose_shapes_do_not_match_the_graph(tmp_path):
    _, checkpoint = saved_agent(tmp_path, AGENTS["lstm"])
    folder = export(checkpoint, tmp_path / "export", format="onnx")
    assert not (folder / "policy.pt").exists()
    sidecar = json.loads((folder / "policy.json").read_text())
    sidecar["state"][1]["shape"] = [1, "B", 17]  # another export's cell state
    (folder / "policy.json").write_text(json.dumps(sidecar))
    played = run_example(str(folder), block=False)
    assert played.returncode == 1 and played.stdout == ""
    assert "policy.json gives c_in the shape [1, 'B', 17], the graph [1, 'B', 16]" in played.stderr


@pytest.fixture
def read_only(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs for root, else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("no read-only folder on this machine (root without mounts)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_refusals_are_one_line_exit_2_and_leave_nothing(tiny_run, tmp_path, cli, capsys, read_only):
    run = tiny_run("lstm")
    (tmp_path / "damaged.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "a-file").write_text("mine")
    cases = [
        ([str(tiny_run("sb3-ppo"))], "out", "a Stable-Baselines3 reference agent"),
        ([str(tmp_path / "damaged.pt")], "out", "damaged or not an rlrnn checkpoint"),
        ([str(run), "--format", "tflite"], "out", "argument --format: invalid choice"),
        ([str(tmp_path / "no-run")], "out", "checkpoint not found"),
        ([str(run)], "full", "full is not empty"),
        ([str(run)], "a-file", "a-file is a file, not a folder"),
        ([str(run)], str(read_only / "export"), "read-only is not writable"),
        ([str(run / "nothing.pt")], "new/deeper/out", "checkpoint not found"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, out, message in cases:
        code = cli(["export", *argv, "--out", str(tmp_path / out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("rlrnn export: "), (argv, err)
        assert message in err[0], (message, err[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out, no temporary folder
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    assert list(read_only.iterdir()) == []
    with pytest.raises(UsageError, match="unknown format 'tflite'"):
        export(run, tmp_path / "out", format="tflite")


def test_a_failed_write_leaves_no_folder_and_no_parent_made_for_it(
    tiny_run, tmp_path, cli, capsys, monkeypatch
):
    from rlrnn.tools.export import export as module

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, "write_torchscript", full_disk)
    out = tmp_path / "made" / "for" / "it"
    code = cli(["export", str(tiny_run("lstm")), "--checkpoint", "final", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 74 and len(err) == 1 and "No space left on device" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_an_empty_folder_is_filled_and_the_api_and_the_command_agree(tiny_run, tmp_path, cli):
    run = tiny_run("lstm")
    (tmp_path / "empty").mkdir()
    argv = ["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "empty")]
    assert cli(argv) == 0
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["policy.json", "policy.pt"]
    via_api = export(str(run), str(tmp_path / "api"), format="torchscript")
    first = json.loads((tmp_path / "empty" / "policy.json").read_text())
    second = json.loads((via_api / "policy.json").read_text())
    assert first == second and first["files"] == {"torchscript": "policy.pt"}


@pytest.mark.parametrize(
    ("name", "sde_sample_freq"), [("mlp", 0), ("gru", 0), ("lstm", 0), ("lstm", 4)]
)
def test_a_box_action_policy_exports_its_mean_as_the_action(tmp_path, name, sde_sample_freq):
    """The mean, whether it explored by a Gaussian or by gSDE (whose noise is training's only)."""
    env = "PositionOnlyPendulum-v1"
    ppo = PPOConfig(sde_sample_freq=sde_sample_freq)
    config = RunConfig(agent=AGENTS[name], env_id=env, ppo=ppo)
    torch.manual_seed(0)
    policy = build_agent(config, 2, 1, continuous=True).eval()
    save_checkpoint(tmp_path / "agent.pt", policy, config)
    folder = export(tmp_path / "agent.pt", tmp_path / "export")
    sidecar = json.loads((folder / "policy.json").read_text())
    assert sidecar["action"] == {
        "space": "Box",
        "dim": 1,
        "low": [-2.0],
        "high": [2.0],
        "action": "the Gaussian's mean (logits); clip it to [low, high]",
    }
    onnx, module = session(folder / "policy.onnx"), torch.jit.load(str(folder / "policy.pt"))
    generator = torch.Generator().manual_seed(0)
    state = policy.initial_state(8)
    onnx_state = {
        s["input"]: np.zeros([8 if d == "B" else d for d in s["shape"]], np.float32)
        for s in sidecar["state"]
    }
    for starts in episode_starts(8, generator)[:40]:
        obs = torch.randn(8, 2, generator=generator)
        action, state = policy.act(obs, state, starts, deterministic=True)  # the mean, (8, 1)
        out = onnx.run(None, {"obs": obs.numpy(), **onnx_state, "episode_start": starts.numpy()})
        np.testing.assert_allclose(out[0], action.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(out[0], out[1], rtol=0, atol=0)
        onnx_state = dict(zip(onnx_state, out[2:], strict=True))
        np.testing.assert_allclose(module.act_starts(obs, starts).numpy(), action, atol=1e-5)

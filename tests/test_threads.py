"""Every entry point that runs a network runs it on the run config's ``torch_threads`` (torch's
default of one thread per core is 10-90x slower on a loaded machine), and a library call leaves
torch's thread count as it found it."""

from pathlib import Path

import pytest
import torch

from rlrnn.cli import main
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.training import train
from rlrnn.tools.render import sinks

THREADS = 2  # the runs' setting; the tests start from 1 (conftest), so a missed setting shows
TINY = PPOConfig(total_timesteps=1024, num_envs=16, num_steps=16)


def tiny(agent: str) -> RunConfig:
    return RunConfig(
        agent=AgentConfig(agent=agent),
        ppo=TINY,
        torch_threads=THREADS,
        eval_interval=512,
        eval_episodes=2,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Finished runs trained with ``torch_threads=2``: rlrnn's lstm and SB3's PPO."""
    folder = tmp_path_factory.mktemp("threads")
    made = {}
    for agent in ("lstm", "sb3-ppo"):
        made[agent] = folder / agent
        train(tiny(agent), made[agent], show_progress=False)
    return made


@pytest.fixture
def network_threads(monkeypatch) -> list[int]:
    """The thread count at every call of any network (``nn.Module.__call__``) from now on."""
    seen: list[int] = []
    call = torch.nn.Module.__call__

    def recording(module, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return call(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", recording)
    return seen


ENTRY_POINTS = {
    "evaluate": ["evaluate", "{run}", "--episodes", "3"],
    "evaluate --json": ["evaluate", "{run}", "--episodes", "3", "--json"],
    "evaluate sb3": ["evaluate", "{sb3}", "--episodes", "2"],
    "evaluate --gif": ["evaluate", "{run}", "--episodes", "1", "--gif", "{tmp}/a.gif"],
    "evaluate --video": ["evaluate", "{run}", "--episodes", "1", "--video", "{tmp}/a.mp4"],
    "evaluate --render": ["evaluate", "{run}", "--episodes", "1", "--render", "human"],
    "probe": ["probe", "{run}", "--episodes", "3", "--out", "{tmp}/p.png"],
    "gradflow": ["gradflow", "{run}", "--cores", "--clip-steps", "0", "--out", "{tmp}/g.png"],
    "compare --runs": ["compare", "--runs", "{run}", "--episodes", "2", "--out", "{tmp}/c"],
    "export": ["export", "{run}", "--out", "{tmp}/e"],
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_each_entry_point_runs_the_network_on_the_runs_thread_count(
    name, runs, tmp_path, monkeypatch, network_threads, capsys
):
    monkeypatch.setattr(sinks, "NO_WINDOW_DRIVERS", ())  # the window code, shown nowhere
    where = {"run": runs["lstm"], "sb3": runs["sb3-ppo"], "tmp": tmp_path}
    argv = [arg.format(**where) for arg in ENTRY_POINTS[name]]
    if "--render" in argv or "--gif" in argv or "--video" in argv:
        argv += ["--render-max-steps", "5", "--fps", "1000"]
    torch.set_num_threads(1)
    assert main(argv) == 0, capsys.readouterr().err
    assert network_threads, "no network ran"
    assert set(network_threads) == {THREADS}
    assert torch.get_num_threads() == 1  # and left as it was


def test_the_helper_restores_the_count_even_on_an_error():
    torch.set_num_threads(1)
    with pytest.raises(RuntimeError, match="inside"), torch_threads(THREADS):
        assert torch.get_num_threads() == THREADS
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 1


def test_the_python_api_evaluate_leaves_the_count_to_its_caller(runs, network_threads):
    from rlrnn import evaluate, load_agent

    agent, config = load_agent(runs["lstm"], "final")
    torch.set_num_threads(1)
    evaluate(agent, config.env_id, episodes=2)
    assert set(network_threads) == {1} and torch.get_num_threads() == 1

"""Balance the cart-pole from positions alone with an exported policy, with numpy, gymnasium
and onnxruntime only: ``python examples/deploy_onnx.py EXPORT_DIR [SEED]`` plays 10 episodes,
episode i seeded SEED + i (as ``evaluate.py RUN --env envs:PositionOnlyCartPole-v1`` seeds
them), and prints the returns."""

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort


def load(folder: str) -> tuple[dict, ort.InferenceSession]:
    """policy.json and the graph, refused unless they agree on the state tensors."""
    spec = json.loads((Path(folder) / "policy.json").read_text())
    session = ort.InferenceSession(str(Path(folder) / "policy.onnx"))
    graph = {i.name: list(i.shape) for i in session.get_inputs()}
    for state in spec["state"]:
        if graph.get(state["input"]) != state["shape"]:
            sys.exit(
                f"{folder}: policy.json gives {state['input']} the shape {state['shape']},"
                f" the graph {graph.get(state['input'])}: they belong to different exports"
            )
    return spec, session


def play(spec: dict, session: ort.InferenceSession, seed: int) -> float:
    """One episode of CartPole-v1 seen through its positions (x, theta), acting by argmax."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    state = {
        s["input"]: np.zeros([1 if d == "B" else d for d in s["shape"]], np.float32)
        for s in spec["state"]
    }  # zeros; the graph resets them anyway at an episode start
    start, total, done = np.ones(1, np.float32), 0.0, False
    while not done:
        action, _, *new = session.run(
            None, {"obs": obs[None, [0, 2]], **state, "episode_start": start}
        )
        state, start = dict(zip(state, new, strict=True)), np.zeros(1, np.float32)
        obs, reward, terminated, truncated, _ = env.step(int(action[0]))
        total, done = total + reward, terminated or truncated
    return total


if __name__ == "__main__":
    spec, session = load(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    returns = [play(spec, session, seed + i) for i in range(10)]
    print("returns:", " ".join(f"{r:g}" for r in returns), f"(mean {np.mean(returns):.1f})")

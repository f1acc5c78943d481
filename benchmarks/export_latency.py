"""Per-step latency and throughput of an exported policy on the CPU: onnxruntime, TorchScript and
torch eager, side by side, each keeping its recurrent state from step to step.

    python benchmarks/export_latency.py --out benchmarks/results/export_latency.json
    python benchmarks/export_latency.py --agents lstm gru mlp --out /tmp/export_latency.json

Each agent is built with its tuned defaults (``rlrnn agents``), saved as a checkpoint and
exported by ``rlrnn.export``; the files are what is measured. Latency: the median (and 90th
percentile) of ``--steps`` single steps at batch 1 after a warm-up, one thread everywhere
(onnxruntime: ``intra_op_num_threads=1``, sequential execution, inputs preallocated; eager:
``ActorCritic.act`` under ``torch.no_grad``; TorchScript: the stateful module's ``act``).
Throughput: env steps per second at batch ``--batch`` over ``--batch-steps`` steps. The result
file starts with :func:`provenance.provenance`'s record; ``docs/export.md`` shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from provenance import provenance  # benchmarks/, beside this script

from rlrnn import export
from rlrnn.learning.hyperparams import default_config
from rlrnn.runs.checkpoint import save_checkpoint
from rlrnn.runs.loading import build_agent

RUNTIMES = ("onnxruntime", "torchscript", "eager")


def make_export(agent: str, folder: Path) -> tuple[torch.nn.Module, Path]:
    """The agent with its tuned sizes (random weights: the time does not depend on them),
    exported into ``folder``."""
    config = default_config(agent)
    torch.manual_seed(0)
    policy = build_agent(config, 2, 2).eval()
    save_checkpoint(folder / "agent.pt", policy, config)
    return policy, export(folder / "agent.pt", folder / "export")


def steppers(policy: torch.nn.Module, folder: Path, batch: int) -> dict[str, Callable[[], object]]:
    """One step of each runtime at ``batch`` environments, its state kept between calls."""
    obs = torch.randn(batch, 2) * 0.05
    sidecar = json.loads((folder / "policy.json").read_text())

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(folder / "policy.onnx"), options, ["CPUExecutionProvider"])
    feeds = {"obs": obs.numpy(), "episode_start": np.zeros(batch, np.float32)}
    shapes = {s["input"]: [batch if d == "B" else d for d in s["shape"]] for s in sidecar["state"]}
    feeds |= {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    outputs = [o["name"] for o in sidecar["outputs"]]

    def onnx_step() -> object:
        out = session.run(outputs, feeds)
        for name, value in zip(shapes, out[2:], strict=True):
            feeds[name] = value
        return out[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation
        module = torch.jit.load(str(folder / "policy.pt"))
    module.reset()
    state = policy.initial_state(batch)
    starts = torch.zeros(batch)

    def eager_step() -> object:
        nonlocal state
        action, state = policy.act(obs, state, starts, True)
        return action

    return {
        "onnxruntime": onnx_step,
        "torchscript": lambda: module.act(obs),
        "eager": eager_step,
    }


def latency(step: Callable[[], object], steps: int, warmup: int = 500) -> tuple[float, float]:
    """Median and 90th percentile of one step, in microseconds."""
    for _ in range(warmup):
        step()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(steps):
        start = clock()
        step()
        samples.append(clock() - start)
    return statistics.median(samples) / 1e3, float(np.percentile(samples, 90)) / 1e3


def throughput(step: Callable[[], object], batch: int, steps: int) -> float:
    """Env steps per second at ``batch`` environments."""
    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["lstm"])
    parser.add_argument("--steps", type=int, default=10_000, help="timed steps at batch 1")
    parser.add_argument("--batch", type=int, default=1024, help="batch of the throughput")
    parser.add_argument("--batch-steps", type=int, default=300, help="steps timed at --batch")
    parser.add_argument("--out", type=Path, required=True, help="the result file (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = provenance()
    record |= {"threads": 1, "onnxruntime": ort.__version__, "load_average": os.getloadavg()}
    rows = []
    print(f"{record['machine']}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(
        f"| agent | runtime | batch 1: median µs/step (p90) | batch {args.batch:,}: env steps/s |"
    )
    print("|---|---|---|---|")
    for agent in args.agents:
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            policy, folder = make_export(agent, Path(tmp))
            one, many = steppers(policy, folder, 1), steppers(policy, folder, args.batch)
            for runtime in RUNTIMES:
                median, p90 = latency(one[runtime], args.steps)
                rate = throughput(many[runtime], args.batch, args.batch_steps)
                rows.append(
                    {
                        "agent": agent,
                        "runtime": runtime,
                        "batch_1_median_us": round(median, 2),
                        "batch_1_p90_us": round(p90, 2),
                        "throughput_batch": args.batch,
                        "env_steps_per_second": round(rate),
                    }
                )
                print(
                    f"| {agent} | {runtime} | {median:.1f} ({p90:.1f}) | {rate:,.0f} |", flush=True
                )
        eager = next(r for r in rows if r["agent"] == agent and r["runtime"] == "eager")
        onnx = next(r for r in rows if r["agent"] == agent and r["runtime"] == "onnxruntime")
        ratio = onnx["batch_1_median_us"] / eager["batch_1_median_us"]
        print(f"{agent}: onnxruntime takes {ratio:.2f}x eager's time per step at batch 1")
    record |= {"steps": args.steps, "batch_steps": args.batch_steps, "rows": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

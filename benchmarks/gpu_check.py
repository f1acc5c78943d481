"""Device self-check: does rlrnn compute on this accelerator what it computes on the CPU?

    python benchmarks/gpu_check.py                 # CUDA when present, else the CPU half
    python benchmarks/gpu_check.py --device cpu    # also the device half, against the CPU itself

The CPU half (always): the host syncs of one training iteration, counted (none in the rollout
and update, the torch backend included); the same seed twice gives bit-equal weights; our LSTM
equals ``torch.nn.LSTM`` in float64. The device half: the tensor cart-pole on the device against
the CPU step for step (start states bit-equal, float64 observations within 1e-9); our LSTM in
float64 on the device against the CPU (outputs and gradients); one PPO minibatch update from the
same rollout on both (loss, gradients, weights after Adam); the same seed twice on the device,
bit-equal; and, on CUDA, a sync audit: ``torch.cuda.set_sync_debug_mode("error")`` over a whole
rollout and update, so any host sync fails with its place. Without CUDA the device half says it
was skipped. Exit status 0 when every check run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from agents import LSTM, RecurrentState, TorchLSTM
from envs import TensorCartPole, make_batched_env
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.host_syncs import count_host_syncs
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent

CPU = torch.device("cpu")
SMALL = PPOConfig(total_timesteps=10**6, num_envs=64, num_steps=16, num_minibatches=2)


def learner(device: torch.device, backend: str = "custom", seed: int = 0) -> PPOLearner:
    torch.manual_seed(seed)
    config = RunConfig(agent=AgentConfig(backend=backend), ppo=SMALL)
    env = make_batched_env(config.env_id, SMALL.num_envs, device)
    agent = build_agent(config, env.obs_dim, env.num_actions, env.continuous).to(device)
    return PPOLearner(agent, env, SMALL, seed)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().cpu().double() - b.detach().cpu().double()).abs().max().item()


# ---------------------------------------------------------------- the CPU half


def host_syncs_per_iteration(_: torch.device) -> tuple[bool, str]:
    counts = {}
    TorchLSTM.cut_on_host = False  # the torch backend's path off the CPU
    try:
        for backend in ("custom", "torch"):
            ppo = learner(CPU, backend)
            ppo.iterate()
            with count_host_syncs() as c:
                ppo.iterate()
            counts[backend] = sum(c.values())
    finally:
        TorchLSTM.cut_on_host = True
    detail = ", ".join(f"{b}: {n}" for b, n in counts.items())
    return all(n == 0 for n in counts.values()), f"host syncs in rollout + update ({detail})"


def same_seed_bit_equal(device: torch.device) -> tuple[bool, str]:
    runs = []
    for _ in range(2):
        ppo = learner(device)
        for _ in range(2):
            ppo.iterate()
        runs.append([p.detach().clone() for p in ppo.agent.parameters()])
    equal = all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    return (
        equal,
        f"two runs of 2 iterations on {device}: weights {'bit-equal' if equal else 'DIFFER'}",
    )


def lstm_equals_nn_lstm(_: torch.device) -> tuple[bool, str]:
    ours, x, state, starts = lstm_inputs(CPU)
    fused = TorchLSTM(3, 16, 2).double()
    fused.load_from(ours)
    fused.cut_on_host = False
    out_a, _ = ours(x, state, starts)
    out_b, _ = fused(x, state, starts)
    grads = [torch.autograd.grad(o.square().sum(), [x, *state]) for o in (out_a, out_b)]
    diff = max([max_diff(out_a, out_b)] + [max_diff(a, b) for a, b in zip(*grads, strict=True)])
    return diff < 1e-10, f"custom vs torch.nn.LSTM, float64: max difference {diff:.1e}"


CPU_HALF = (host_syncs_per_iteration, same_seed_bit_equal, lstm_equals_nn_lstm)

# ---------------------------------------------------------------- the device half


def lstm_inputs(device: torch.device, T: int = 20, B: int = 8):
    torch.manual_seed(0)
    core = LSTM(3, 16, 2).double().to(device)
    x = torch.randn(T, B, 3, dtype=torch.double).to(device).requires_grad_()
    state = RecurrentState(
        torch.randn(2, B, 16, dtype=torch.double).to(device).requires_grad_(),
        torch.randn(2, B, 16, dtype=torch.double).to(device).requires_grad_(),
    )
    starts = (torch.rand(T, B) < 0.15).double().to(device)
    return core, x, state, starts


def env_device_vs_cpu(device: torch.device) -> tuple[bool, str]:
    n, steps = 256, 600
    envs = [TensorCartPole(n, d, position_only=False, dtype=torch.float64) for d in (CPU, device)]
    obs = [env.reset(5) for env in envs]
    generator = torch.Generator().manual_seed(0)
    worst, starts_equal, dones_equal = max_diff(*obs), True, True
    for _ in range(steps):
        actions = torch.randint(0, 2, (n,), generator=generator)
        results = [env.step(actions.to(env.device)) for env in envs]
        starts_equal &= torch.equal(envs[0]._start_states(), envs[1]._start_states().cpu())
        done = [(r.terminated | r.truncated).cpu() for r in results]
        dones_equal &= torch.equal(*done)
        worst = max(worst, max_diff(results[0].obs, results[1].obs))
    ok = starts_equal and dones_equal and worst < 1e-9
    starts_verdict = "bit-equal" if starts_equal else "DIFFER"
    return ok, (
        f"{n} envs x {steps} steps, float64: start states {starts_verdict}, episode ends"
        f" {'equal' if dones_equal else 'DIFFER'}, max observation difference {worst:.1e}"
    )


def lstm_device_vs_cpu(device: torch.device) -> tuple[bool, str]:
    results = []
    for d in (CPU, device):
        core, x, state, starts = lstm_inputs(d)
        out, final = core(x, state, starts)
        loss = out.square().sum() + final.c.sum()
        grads = torch.autograd.grad(loss, [x, *state, *core.parameters()])
        results.append([out, *final, *grads])
    diff = max(max_diff(a, b) for a, b in zip(*results, strict=True))
    return diff < 1e-10, f"LSTM float64 outputs, states and gradients: max difference {diff:.1e}"


def update_device_vs_cpu(device: torch.device) -> tuple[bool, str]:
    cpu = learner(CPU)
    rollout, _ = cpu.collect_rollout()
    other = learner(device)
    other.agent.load_state_dict(cpu.agent.state_dict())
    moved = type(rollout)(*(t.to(device) if isinstance(t, torch.Tensor) else t for t in rollout))
    moved = moved._replace(
        initial_state=RecurrentState(*(t.to(device) for t in rollout.initial_state))
    )
    envs = torch.arange(SMALL.sequences_per_minibatch)  # whole envs: no --bptt-len
    losses = []
    for ppo, batch in ((cpu, rollout), (other, moved)):
        stats = ppo._minibatch_step(batch, envs.to(ppo.device), SMALL.clip_coef)
        losses.append(stats["policy_loss"] + stats["value_loss"])
    weights = max(
        max_diff(a, b)
        for a, b in zip(cpu.agent.parameters(), other.agent.parameters(), strict=True)
    )
    loss_diff = max_diff(*losses)
    ok = loss_diff < 1e-5 and weights < 1e-5
    return ok, f"one minibatch update: loss difference {loss_diff:.1e}, weights after {weights:.1e}"


def sync_audit(device: torch.device) -> tuple[bool, str]:
    if device.type != "cuda":
        return True, "set_sync_debug_mode is CUDA's; counted on the CPU instead (above)"
    ppo = learner(device)
    ppo.iterate()  # allocations, the optimizer's state
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        ppo.iterate()
    except RuntimeError as e:
        return False, f"a host sync in the rollout or update: {str(e).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return True, "no host sync in one rollout + update (set_sync_debug_mode('error'))"


DEVICE_HALF = (env_device_vs_cpu, lstm_device_vs_cpu, update_device_vs_cpu, same_seed_bit_equal)


def run(checks: tuple[Callable, ...], device: torch.device) -> bool:
    ok = True
    for check in checks:
        passed, detail = check(device)
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {check.__name__}: {detail}", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    name = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if name == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}; CPU half", flush=True)
    ok = run(CPU_HALF, CPU)
    if name == "auto":
        print(
            "SKIP  device half: no CUDA device here (env, LSTM and PPO update on the device vs"
            " the CPU, same seed twice on the device, the sync audit)"
        )
    else:
        device = torch.device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU itself"
        print(f"device half on {label}", flush=True)
        ok &= run((*DEVICE_HALF, sync_audit), device)
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

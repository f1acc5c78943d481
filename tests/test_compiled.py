"""--compile: the compiled hot loop computes what the eager one does.

The fast tests trace with dynamo and differentiate with AOTAutograd (``backend="aot_eager"``:
the graphs torch.compile builds, run without generating code), ``fullgraph=True`` so a graph
break fails them; the slow one generates code with inductor, as ``--compile`` does.
"""

import dataclasses

import pytest
import torch

from envs import TensorCartPole, make_batched_env
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.loss import ppo_loss
from rlrnn.learning.ppo import PPOLearner
from rlrnn.learning.rollout import act_step
from rlrnn.runs.loading import build_agent

TINY = PPOConfig(total_timesteps=4096, num_envs=8, num_steps=6, num_minibatches=2, update_epochs=1)


def learner(agent: str = "lstm", **agent_options) -> PPOLearner:
    torch.manual_seed(0)
    config = RunConfig(agent=AgentConfig(agent=agent, **agent_options), ppo=TINY)
    env = make_batched_env(config.env_id, TINY.num_envs)
    ppo = PPOLearner(build_agent(config, env.obs_dim, env.num_actions), env, TINY, seed=0)
    ppo.iterate()  # away from the initial weights, the normaliser moved
    return ppo


def losses_and_grads(ppo: PPOLearner, loss_fn, rollout, envs, clip: float):
    ppo.agent.zero_grad(set_to_none=True)
    loss, stats = loss_fn(ppo.agent, rollout, envs, clip, ppo.config)
    loss.backward()
    return loss.detach(), stats, [p.grad.clone() for p in ppo.agent.parameters()]


@pytest.fixture(autouse=True)
def _fresh_compiler():
    """Each test traces afresh, and a test that would run eager past the recompile limit fails.

    The setting goes through torch's own ``config.patch``, which restores it on exit; a
    monkeypatched module attribute of dynamo's config is deleted on undo by newer pytests.
    """
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("agent", "options"),
    [
        ("lstm", {}),
        pytest.param("lstm2", {}, marks=pytest.mark.slow),
        pytest.param("lstm", {"shared_core": False}, marks=pytest.mark.slow),
        pytest.param("gru", {}, marks=pytest.mark.slow),
    ],
)
def test_the_minibatch_loss_traces_whole_and_equals_eager_on_a_fixed_rollout(agent, options):
    ppo = learner(agent, **options)
    rollout, _ = ppo.collect_rollout()
    while rollout.episode_starts[1:, :4].sum() == 0:  # want resets inside replayed sequences
        rollout, _ = ppo.collect_rollout()
    envs = torch.tensor([2, 0, 3, 1])
    compiled = torch.compile(ppo_loss, backend="aot_eager", fullgraph=True)
    for clip in (0.2, 0.1):  # two values of the annealed clip: one graph serves both
        loss, stats, grads = losses_and_grads(ppo, ppo_loss, rollout, envs, clip)
        c_loss, c_stats, c_grads = losses_and_grads(ppo, compiled, rollout, envs, clip)
        torch.testing.assert_close(c_loss, loss, rtol=1e-5, atol=1e-6)
        for key in stats:
            torch.testing.assert_close(c_stats[key], stats[key], rtol=1e-5, atol=1e-6)
        for a, b in zip(c_grads, grads, strict=True):  # autograd's backward vs the hand BPTT
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_acting_step_and_the_env_step_trace_whole_and_equal_eager():
    ppo = learner()
    act = torch.compile(act_step, backend="aot_eager", fullgraph=True)
    eager_env, traced_env = TensorCartPole(64), TensorCartPole(64)
    step = torch.compile(TensorCartPole.step, backend="aot_eager", fullgraph=True)
    obs = eager_env.reset(7)
    assert torch.equal(traced_env.reset(7), obs)
    state = ppo.agent.initial_state(64)
    starts = torch.ones(64)
    with torch.no_grad():
        for _ in range(60):  # episodes end and restart: start states from the hash, not the table
            rng = torch.get_rng_state()
            logits, value, _, actions = act_step(ppo.agent, obs, state, starts)
            torch.set_rng_state(rng)
            c_logits, c_value, c_state, c_actions = act(ppo.agent, obs, state, starts)
            torch.testing.assert_close(c_logits, logits)
            torch.testing.assert_close(c_value, value)
            assert torch.equal(c_actions, actions)  # the same random numbers as eager
            result, traced = eager_env.step(actions), step(traced_env, actions)
            for a, b in zip(traced, result, strict=True):
                assert torch.equal(a, b)
            obs, state, starts = result.obs, c_state, (result.terminated | result.truncated).float()
    assert eager_env._episodes.sum() > 64  # some envs finished episodes
    traced_env.step(actions)  # back in eager mode the table is refilled before it is used
    assert torch.equal(traced_env._start_states(), traced_env._hashed_start_states())


@pytest.mark.parametrize("sde_sample_freq", [0, 4], ids=["gaussian", "gsde"])
def test_box_actions_warm_up_and_train_through_the_traced_functions(sde_sample_freq):
    """``--compile`` on the pendulum: the warm-up's stand-in rollout holds float actions of the
    Box's size (it held Discrete indices, which a Gaussian cannot score), then a real iteration
    runs through the same traced functions."""
    from rlrnn.learning.compiled import _warm_up

    ppo_config = dataclasses.replace(TINY, sde_sample_freq=sde_sample_freq)
    config = RunConfig(env_id="PositionOnlyPendulum-v1", ppo=ppo_config)
    env = make_batched_env(config.env_id, TINY.num_envs)
    torch.manual_seed(0)
    agent = build_agent(config, env.obs_dim, env.num_actions, continuous=True)
    ppo = PPOLearner(agent, env, ppo_config, seed=0)
    ppo.act_fn = torch.compile(act_step, backend="aot_eager")
    ppo.loss_fn = torch.compile(ppo_loss, backend="aot_eager", fullgraph=True)
    _warm_up(ppo, None)
    stats, _ = ppo.iterate()
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in stats.values())


@pytest.mark.slow
def test_compiled_training_equals_eager_to_float_tolerance():
    """Inductor's generated code, as ``--compile`` runs it (about 2 minutes on 2 cores)."""
    from rlrnn.learning.compiled import compile_hot_loop

    eager, compiled = learner(), learner()
    seconds = compile_hot_loop(compiled)
    assert seconds > 0
    for ppo in (eager, compiled):  # the same random numbers for both: eager's generator
        torch.manual_seed(1)
        ppo.stats, _ = ppo.iterate()
    for key, value in eager.stats.items():
        torch.testing.assert_close(compiled.stats[key], value, rtol=1e-3, atol=1e-5, msg=key)
    for a, b in zip(compiled.agent.parameters(), eager.agent.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    rollout, _ = eager.collect_rollout()
    envs = torch.arange(4)
    loss, _, grads = losses_and_grads(eager, ppo_loss, rollout, envs, 0.2)
    c_loss, _, c_grads = losses_and_grads(eager, compiled.loss_fn, rollout, envs, 0.2)
    torch.testing.assert_close(c_loss, loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(c_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_compile_is_for_rlrnns_agents(cli, capsys):
    assert cli(["train", "--agent", "sb3-ppo", "--compile", "--quiet"]) == 2
    assert "--compile is for rlrnn's agents, not sb3-ppo" in capsys.readouterr().err
    assert dataclasses.replace(RunConfig(), compile=True).compile

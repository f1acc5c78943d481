"""``--bptt-len``: the update replays chunks of each env's rollout from the states stored at
their first steps, set apart from the rollout's length."""

import dataclasses
import json

import pytest
import torch

from envs import make_batched_env
from rlrnn.cli import build_parser, main
from rlrnn.cli.options import config_from_args
from rlrnn.errors import UsageError
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.memory import check_training_memory, training_bytes
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent

TINY = PPOConfig(total_timesteps=2048, num_envs=8, num_steps=16, num_minibatches=2, update_epochs=2)


def make_trainer(ppo: PPOConfig, agent: str = "lstm", shared: bool = True) -> PPOLearner:
    torch.manual_seed(0)
    config = RunConfig(agent=AgentConfig(agent=agent, shared_core=shared), ppo=ppo)
    env = make_batched_env(config.env_id, ppo.num_envs)
    return PPOLearner(build_agent(config, env.obs_dim, env.num_actions), env, ppo, seed=0)


def trained_weights(ppo: PPOConfig, iterations: int = 3) -> list[torch.Tensor]:
    trainer = make_trainer(ppo)
    for _ in range(iterations):
        trainer.iterate()
    return [p.detach().clone() for p in trainer.agent.parameters()]


def test_one_chunk_of_the_whole_rollout_trains_exactly_as_without_the_option():
    """bptt_len = num_steps goes through the chunking code and changes nothing, bit for bit."""
    default = trained_weights(TINY)
    whole = trained_weights(dataclasses.replace(TINY, bptt_len=TINY.num_steps))
    assert all(torch.equal(a, b) for a, b in zip(default, whole, strict=True))
    chunked = trained_weights(dataclasses.replace(TINY, bptt_len=4))
    assert not all(torch.equal(a, b) for a, b in zip(default, chunked, strict=True))


@pytest.mark.parametrize(
    ("agent", "shared"),
    [("lstm", True), ("lstm", False), ("gru", True), ("framestack", False), ("mlp", True)],
)
def test_each_chunk_replays_from_the_state_the_rollout_had_at_its_first_step(agent, shared):
    ppo = make_trainer(dataclasses.replace(TINY, bptt_len=4), agent, shared)
    ppo.collect_rollout()  # the second rollout starts mid-episode, from a non-zero state
    rollout, _ = ppo.collect_rollout()
    chunks = rollout.sequences()
    assert chunks.obs.shape[:2] == (4, 4 * TINY.num_envs)  # (K, T/K * B)
    assert chunks.initial_state.h.shape[1] == 4 * TINY.num_envs
    assert chunks.episode_starts.sum() > 0  # resets inside the chunks too
    # Chunk-major: sequence c*B + b is steps c*K ... c*K + K - 1 of env b.
    torch.testing.assert_close(chunks.obs[:, 2 * TINY.num_envs + 5], rollout.obs[8:12, 5])
    with torch.no_grad():
        logits, values, _ = ppo.agent(chunks.obs, chunks.initial_state, chunks.episode_starts)
    logp = logits.log_softmax(-1).gather(-1, chunks.actions[..., None]).squeeze(-1)
    torch.testing.assert_close(logp, chunks.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, chunks.values, atol=1e-5, rtol=1e-5)
    if agent != "mlp":  # the check can fail: a recurrent policy from zero states differs
        zero = chunks.initial_state._replace(
            h=torch.zeros_like(chunks.initial_state.h), c=torch.zeros_like(chunks.initial_state.c)
        )
        with torch.no_grad():
            _, from_zero, _ = ppo.agent(chunks.obs, zero, chunks.episode_starts)
        assert (from_zero - chunks.values).abs().max() > 1e-4


def test_the_first_minibatch_of_a_chunked_update_sees_the_rollouts_policy():
    """Before any gradient step, each chunk's ratio is 1: approx_kl 0, nothing clipped."""
    ppo = make_trainer(dataclasses.replace(TINY, num_steps=32, bptt_len=8))
    ppo.iterate()  # the next rollout starts from the states the first one ended with
    seen = []
    loss_fn = ppo.loss_fn

    def recording(agent, rollout, seqs, clip, cfg, bounds):
        loss, stats = loss_fn(agent, rollout, seqs, clip, cfg, bounds)
        seen.append((rollout.obs.shape[:2], seqs.numel(), stats))
        return loss, stats

    ppo.loss_fn = recording
    ppo.iterate()
    (shape, size, first), *rest = seen
    assert shape == (8, 4 * TINY.num_envs) and size == 2 * TINY.num_envs
    assert len(rest) == TINY.update_epochs * TINY.num_minibatches - 1
    assert first["approx_kl"].abs() < 1e-9 and first["clipfrac"] == 0
    assert max(s["approx_kl"] for *_, s in rest) > 1e-6  # later minibatches moved the policy


@pytest.mark.parametrize(("num_steps", "bptt_len"), [(128, 16), (512, 32)])
def test_long_rollouts_train_in_short_chunks(num_steps, bptt_len):
    ppo = dataclasses.replace(
        TINY, num_steps=num_steps, bptt_len=bptt_len, total_timesteps=2 * 8 * num_steps
    )
    trainer = make_trainer(ppo)
    for _ in range(2):
        stats, _ = trainer.iterate()
        assert all(torch.isfinite(v).all() for v in stats.values())
    config = RunConfig(ppo=ppo)
    check_training_memory(config, "cpu")
    whole = RunConfig(ppo=dataclasses.replace(ppo, bptt_len=None))
    assert training_bytes(config, 2, 2, True) > training_bytes(whole, 2, 2, True)


def test_the_command_line_trains_with_bptt_len_and_saves_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--num-envs", "8", "--num-steps", "64", "--bptt-len", "16", "--num-minibatches", "4"]
    args += ["--total-timesteps", "1024", "--eval-interval", "0", "--quiet"]
    code = main(["train", *args, "--run-dir", str(run_dir)])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["ppo"]["bptt_len"] == 16
    assert RunConfig.from_dict(saved).ppo.sequences_per_minibatch == 8  # 8 envs x 4 chunks / 4


def test_the_flag_reads_none_back_to_the_whole_rollout():
    given = RunConfig(ppo=dataclasses.replace(TINY, bptt_len=4))  # e.g. from --config

    def bptt_len(*args: str) -> int | None:
        return config_from_args(build_parser().parse_args(["train", *args]), given).ppo.bptt_len

    assert bptt_len("--bptt-len", "8") == 8
    assert bptt_len("--bptt-len", "none") is None
    assert bptt_len() == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bptt_len": 0}, "bptt_len must be >= 1, got 0"),
        ({"bptt_len": 5}, r"bptt_len \(5\) must divide num_steps \(16\)"),
        ({"bptt_len": 32}, r"bptt_len \(32\) must divide num_steps \(16\)"),
        ({"bptt_len": 2.0}, "bptt_len must be an integer or none, got 2.0"),
        ({"bptt_len": True}, "bptt_len must be an integer or none, got True"),
        (
            {"num_envs": 3, "bptt_len": 8, "num_minibatches": 4},
            r"num_minibatches \(4\) must divide the 6 sequences of a rollout",
        ),
    ],
)
def test_impossible_bptt_lengths_are_refused(changes, message):
    with pytest.raises(UsageError, match=message):
        RunConfig(ppo=dataclasses.replace(TINY, **changes))


def test_minibatches_divide_sequences_not_envs():
    """With chunks, a minibatch need not hold whole envs: 3 envs x 2 chunks into 2 minibatches."""
    ppo = dataclasses.replace(TINY, num_envs=3, num_minibatches=2, bptt_len=8)
    assert (ppo.num_sequences, ppo.sequences_per_minibatch, ppo.sequence_length) == (6, 3, 8)
    with pytest.raises(UsageError, match="must divide num_envs"):
        dataclasses.replace(ppo, bptt_len=None).check_whole_sequences()


def test_sb3_agents_refuse_it():
    with pytest.raises(UsageError, match="bptt_len is for rlrnn's agents, not sb3-ppo") as raised:
        RunConfig(agent=AgentConfig(agent="sb3-ppo"), ppo=dataclasses.replace(TINY, bptt_len=8))
    assert raised.value.fields == ("bptt_len",)  # the command line shows it as --bptt-len


def test_the_config_round_trips_through_json_and_older_files_load_as_the_whole_rollout():
    config = RunConfig(ppo=dataclasses.replace(TINY, bptt_len=4))
    assert RunConfig.from_dict(json.loads(config.to_json())) == config
    old = json.loads(RunConfig(ppo=TINY).to_json())
    del old["ppo"]["bptt_len"]  # a config.json from before the option
    assert RunConfig.from_dict(old).ppo.bptt_len is None
    typed = json.loads(config.to_json())
    typed["ppo"]["bptt_len"] = "4"
    with pytest.raises(UsageError, match=r"ppo\.bptt_len must be an integer or none, got '4'"):
        RunConfig.from_dict(typed)


def test_compile_warms_up_on_the_shapes_of_the_chunks(monkeypatch):
    """``--compile`` traces the loss on (K, T/K * B) sequences up front: training with
    ``bptt_len`` then compiles nothing more."""
    from rlrnn.learning.compiled import compile_hot_loop

    original = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn: original(fn, backend="aot_eager"))
    ppo = make_trainer(dataclasses.replace(TINY, num_steps=32, bptt_len=8))
    torch._dynamo.reset()
    try:
        compile_hot_loop(ppo, say=None)
        frames = dict(torch._dynamo.utils.counters["frames"])
        ppo.iterate()
        assert dict(torch._dynamo.utils.counters["frames"]) == frames
    finally:
        torch._dynamo.reset()

"""The learning core: everything a training run needs, and nothing that looks at its results.

It imports ``envs``, ``agents`` and ``rlrnn.errors`` / ``rlrnn.files``, never ``rlrnn.tools``
or ``rlrnn.cli``. Its modules, each using only the ones listed before it:

- ``config``: the typed, validated run config (``RunConfig``, ``AgentConfig``, ``PPOConfig``);
  ``hyperparams``: each agent's tuned defaults and ``rlrnn tune``'s search spaces;
- ``memory``: size estimates checked before anything is allocated; ``rundir``: who owns a run
  folder (marker, lock);
- ``player``: the one act loop (a policy stepped through a batched env); ``evaluation``: whole
  episodes and their returns;
- ``gae``, ``ppo_step`` (the hot loop's pure functions: acting step, minibatch loss), ``ppo``:
  recurrent PPO (the rollout keeps its own storage-filling loop); ``safety``: stop signals and
  the divergence guard; ``schedule``: evaluation and checkpoint intervals in whole iterations;
  ``host_syncs``: counting host reads; ``compiled``: ``--compile``;
- ``checkpoint``: the file format; ``loading``: building agents and loading them from files;
- ``runlog``: the periodic evaluations and progress bar of a run; ``resume``: ``last.pt``;
  ``plots``: the run's learning curve; ``sb3``: the SB3 reference agents;
- ``training``: the training run (``train``), which dispatches the SB3 agents to ``sb3``;
- ``export_graph``, ``export``: a trained policy as ONNX and TorchScript files (``rlrnn export``).
"""

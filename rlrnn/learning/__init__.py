"""Learning: the algorithm, with no files, folders or signals in it.

It imports ``envs``, ``agents`` and ``rlrnn.errors`` / ``rlrnn.files``, never ``rlrnn.runs``,
``rlrnn.tools`` or ``rlrnn.cli`` (the layout test enforces it). Its modules, each using only the
ones listed before it:

- ``config``: the typed, validated run config (``RunConfig``, ``AgentConfig``, ``PPOConfig``);
  ``hyperparams``: each agent's tuned defaults and ``rlrnn tune``'s search spaces;
- ``memory``: size estimates checked before anything is allocated; ``threads``: torch's CPU
  thread count for one command;
- ``acting``: the one act loop (a policy stepped through a batched env); ``evaluation``: whole
  episodes and their returns;
- ``gae``: advantages; ``rollout``: the rollout's storage and the acting step of the hot loop;
  ``loss``: the clipped PPO loss of one minibatch; ``ppo``: the learner (``PPOLearner``:
  collect a rollout, update, and its state for resuming); ``compiled``: ``compile=True``;
  ``host_syncs``: counting host reads.
"""

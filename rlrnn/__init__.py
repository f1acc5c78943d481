"""rlrnn: recurrent policies that balance a cart-pole from positions alone.

``rlrnn`` holds the learning and the tools (configs, recurrent PPO, evaluation, checkpoints, the
CLI); it builds on ``envs`` (the worlds) and ``agents`` (the policies), which know nothing of it.
"""

__version__ = "0.1.0"

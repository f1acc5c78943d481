"""Torch's CPU thread count for the work of one command.

Torch starts one thread per core; for rlrnn's small networks that is slower than one thread, and
on a loaded machine it is 10-90x slower (100 evaluation episodes: 48 s against 0.55 s on a
busy 2-core CPU). Every entry point that runs a network (training, ``rlrnn evaluate`` with its
rendering to a window, video or GIF, ``rlrnn probe``, ``rlrnn gradflow``, ``rlrnn compare``'s
evaluations) runs it inside :func:`torch_threads` with the run config's ``torch_threads``.

The library functions that take a policy rather than a run (``rlrnn.evaluate``,
:func:`rlrnn.tools.render.rendering.render_episodes`) leave the count to their caller, as torch's
own functions do: a library call does not change the process's global torch state behind its back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` CPU threads (whatever the device: the env, the probe's
    fit and the recorders run on the CPU), restoring the count it found on the way out."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

"""Counting the places where the host waits for the device, observable on a CPU.

On a GPU every read of a device value by Python (``.item()``, ``.tolist()``, ``bool(t)``, a
``.cpu()`` copy), every op whose output size depends on the data (``nonzero``) and every tensor
made from Python data (``torch.tensor(x, device=...)``, a host-to-device copy) stalls the host
until the queued kernels have run. On a CPU nothing stalls, but the same calls are made, so
counting them here tells how many syncs a GPU run would make: :func:`count_host_syncs` counts
the dispatched ops that need the host (``aten._local_scalar_dense``, ``nonzero``, ...) and the
Python-level copies to the host (``tolist``, ``numpy``, ``cpu``), which a CPU tensor answers
without dispatching anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Ops that read device data on the host, or whose output size does.
SYNC_OPS = {
    aten._local_scalar_dense.default: "item",  # .item(), float(t), bool(t), int(t)
    aten.nonzero.default: "nonzero",
    aten.masked_select.default: "masked_select",
    aten.lift_fresh.default: "tensor from host data",  # torch.tensor(...): a host-to-device copy
}
HOST_COPIES = ("tolist", "numpy", "cpu")  # Tensor methods that copy to the host


class _SyncOps(TorchDispatchMode):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = SYNC_OPS.get(func)
        if name is not None:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def count_host_syncs() -> Iterator[Counter[str]]:
    """A Counter of the host syncs made inside the block, by kind (``sum(c.values())``: all).

    A ``.cpu().numpy()`` counts as two calls; the code this audits makes one call per sync.
    """
    counts: Counter[str] = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_COPIES}
    own = {name: torch.Tensor.__dict__.get(name) for name in HOST_COPIES}  # else inherited

    def counting(name: str) -> Any:
        original = originals[name]

        def method(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(self, *args, **kwargs)

        return method

    for name in HOST_COPIES:
        setattr(torch.Tensor, name, counting(name))
    try:
        with _SyncOps(counts):
            yield counts
    finally:
        for name, original in own.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)

"""Observation spaces rlrnn can feed a policy, and their encoding as flat float vectors.

``Box`` observations are flattened; ``Discrete`` ones become one-hot vectors and
``MultiDiscrete`` ones concatenated one-hots, one per component in row-major order
(Stable-Baselines3's convention, and gymnasium's ``spaces.flatten``). ``Dict`` and ``Tuple``
spaces are refused: flatten them first (``gymnasium.wrappers.FlattenObservation``).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

SUPPORTED = "Box, Discrete or MultiDiscrete"


class ObservationError(ValueError):
    """An env handed out an observation outside its own observation space (the env's fault;
    the message is one line, for the caller to prefix with the env's id)."""


def space_problem(space: spaces.Space) -> str | None:
    """Why rlrnn cannot encode ``space`` (one line), or None if it can."""
    if isinstance(space, spaces.Box | spaces.Discrete | spaces.MultiDiscrete):
        return None if flat_size(space) >= 1 else f"has an empty observation space {space}"
    kind = type(space).__name__
    return (
        f"has a {kind} observation space; rlrnn needs {SUPPORTED}"
        " (flatten it first, e.g. with gymnasium.wrappers.FlattenObservation)"
    )


def flat_size(space: spaces.Space) -> int:
    """Length of the encoded observation of a supported ``space``."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    return int(np.prod(space.shape))


def encode(space: spaces.Space, obs: np.ndarray) -> np.ndarray:
    """A batch of ``N`` observations of ``space`` as float32 ``(N, flat_size(space))``."""
    n = len(obs)
    if isinstance(space, spaces.Box):
        return np.asarray(obs, dtype=np.float32).reshape(n, -1)  # (N, *shape) -> (N, D)
    if isinstance(space, spaces.Discrete):
        sizes, starts = np.array([space.n]), np.array([space.start])
    else:
        sizes, starts = space.nvec.ravel(), space.start.ravel()
    values = np.asarray(obs).reshape(n, -1)  # (N, *shape) -> (N, K)
    with np.errstate(invalid="ignore"):  # NaN and inf are refused below, not cast
        whole = np.isfinite(values) & (np.floor(values) == values)
        index = np.where(whole, values, starts).astype(np.int64) - starts
    outside = ~whole | (index < 0) | (index >= sizes)
    if outside.any():  # its one-hot would set another column, or none
        bad = values[np.argwhere(outside)[0][0]].tolist()
        raise ObservationError(
            f"returned the observation {bad[0] if isinstance(space, spaces.Discrete) else bad},"
            f" outside its observation space {space}: the env is at fault"
        )
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # (K,) first column of each one-hot
    out = np.zeros((n, int(sizes.sum())), dtype=np.float32)
    np.put_along_axis(out, index + offsets, 1.0, axis=1)
    return out

"""The ids of the partially observed cart-poles, and the parameters each one names.

Two families keep ``PositionOnlyCartPole-v1``'s dynamics, 500-step limit and 475 threshold and
corrupt what the agent sees, so that a fixed window of past frames is no longer enough:

- **noisy**: Gaussian noise of standard deviation ``sigma`` on ``[x, theta]``, clipped to the
  observation box; named at POPGym's three levels (``NoisyPositionOnlyCartPoleEasy-v1``: 0.1,
  ``...Medium-v1``: 0.2, ``...Hard-v1``: 0.3) or at any level as
  ``NoisyPositionOnlyCartPole-sigma0.15-v1``;
- **flickering**: each observation replaced by zeros with probability ``p``, without telling the
  agent (DRQN's flickering Atari): ``FlickeringPositionOnlyCartPole-v1`` (p = 0.5) or
  ``FlickeringPositionOnlyCartPole-p0.3-v1``.

Any of these ids with ``-LastAction`` before ``-v1``
(``NoisyPositionOnlyCartPoleEasy-LastAction-v1``,
``NoisyPositionOnlyCartPole-sigma0.15-LastAction-v1``) also shows the agent the action it took
last, as a third observation: -1 (left), +1 (right), 0 at an episode's first step. That is what a
model-based filter (a Kalman filter) uses beside the measurements: a velocity is the sum of every
push since the episode began, which a recurrent state can keep and a window of frames cannot.

This module knows names, numbers and gymnasium's registry (no torch), so every layer can ask it;
the envs themselves are in :mod:`envs.partial_cartpole`.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import gymnasium as gym

ENTRY_POINT = "envs.partial_cartpole:PartialCartPoleEnv"
NOISY_LEVELS = {"Easy": 0.1, "Medium": 0.2, "Hard": 0.3}
DEFAULT_FLICKER = 0.5

LAST_ACTION = "-LastAction"
_LAST_ACTION_END = LAST_ACTION + "-v1"  # how an id that shows the last action ends


class VariantParams(NamedTuple):
    """What a variant id names: the noise, the flicker, and whether the last action is seen."""

    sigma: float
    flicker: float
    last_action: bool = False


def with_last_action(env_id: str) -> str:
    """The id of variant ``env_id`` whose observation also carries the last action."""
    return env_id.removesuffix("-v1") + _LAST_ACTION_END


_LEVELS: dict[str, tuple[float, float]] = {
    **{f"NoisyPositionOnlyCartPole{level}-v1": (s, 0.0) for level, s in NOISY_LEVELS.items()},
    "FlickeringPositionOnlyCartPole-v1": (0.0, DEFAULT_FLICKER),
}
# id -> what it names, for every named variant, with and without the last action.
NAMED_VARIANTS: dict[str, VariantParams] = {
    **{env_id: VariantParams(*p) for env_id, p in _LEVELS.items()},
    **{with_last_action(env_id): VariantParams(*p, True) for env_id, p in _LEVELS.items()},
}

_PARAMETRIZED = re.compile(
    r"^(?P<family>Noisy|Flickering)PositionOnlyCartPole-(?P<key>sigma|p)(?P<value>[^ ]*)-v1$"
)


# A well-formed id of each parametrized family, for the messages.
_EXAMPLES = {
    "Noisy": "NoisyPositionOnlyCartPole-sigma0.15-v1",
    "Flickering": "FlickeringPositionOnlyCartPole-p0.3-v1",
}


class VariantError(ValueError):
    """A variant id or parameter that cannot be used (the message is one line)."""


def check_params(sigma: float, flicker: float) -> None:
    """Raise :class:`VariantError` unless ``sigma >= 0`` and ``0 <= flicker <= 1`` (finite)."""
    if not (math.isfinite(sigma) and sigma >= 0):
        raise VariantError(f"the noise sigma must be a finite number >= 0, got {sigma}")
    if not (math.isfinite(flicker) and 0 <= flicker <= 1):
        raise VariantError(f"the flicker probability p must be in [0, 1], got {flicker}")


def variant_params(env_id: str) -> VariantParams | None:
    """What ``env_id`` names if it is a partially observed cart-pole, else None.

    Raises :class:`VariantError` for an id of the parametrized form with an impossible value.
    """
    if env_id in NAMED_VARIANTS:
        return NAMED_VARIANTS[env_id]
    last_action = env_id.endswith(_LAST_ACTION_END)
    base = env_id.removesuffix(_LAST_ACTION_END) + "-v1" if last_action else env_id
    match = _PARAMETRIZED.match(base)
    if match is None:
        return None
    family, key, text = match.group("family", "key", "value")
    expected = "sigma" if family == "Noisy" else "p"
    example = f"(e.g. {_EXAMPLES[family]})"
    if key != expected:
        raise VariantError(
            f"env id {env_id!r}: a {family.lower()} cart-pole takes {expected} {example}"
        )
    try:
        value = float(text)
    except ValueError:
        raise VariantError(
            f"env id {env_id!r}: {key} must be a number, got {text!r} {example}"
        ) from None
    sigma, flicker = (value, 0.0) if key == "sigma" else (0.0, value)
    try:
        check_params(sigma, flicker)
    except VariantError as e:
        raise VariantError(f"env id {env_id!r}: {e} {example}") from None
    return VariantParams(sigma, flicker, last_action)


def variant_kwargs(env_id: str) -> dict[str, float | bool] | None:
    """The gymnasium constructor kwargs of a variant id (None if it is not one)."""
    params = variant_params(env_id)
    return None if params is None else params._asdict()


def register(env_id: str) -> bool:
    """Register ``env_id`` with gymnasium if it names a variant (named or parametrized); returns
    whether it is one. Raises :class:`VariantError` for a parametrized id with a bad value."""
    kwargs = variant_kwargs(env_id)
    if kwargs is None:
        return False
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            kwargs=kwargs,
            max_episode_steps=500,
            reward_threshold=475.0,
        )
    return True

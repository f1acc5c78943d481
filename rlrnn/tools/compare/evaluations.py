"""A comparison's evaluations of a run's final and best weights, kept in the run folder
(``RunFolder.evaluations``) under a key of everything they depend on, so a comparison run again
evaluates only what changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text, read_json, sha256
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.folder import RunFolder
from rlrnn.runs.loading import load_checkpoint

# Saved evaluations are re-used only under the same key (:func:`evaluation_key`); a change to how
# a comparison evaluates bumps this, so older files are evaluated again.
EVAL_FORMAT = 2


def evaluation_settings(env_id: str, episodes: int) -> dict[str, Any]:
    """Every argument a comparison passes to :func:`rlrnn.learning.evaluation.evaluate` (the same
    fresh episodes for every run)."""
    return {
        "env_id": env_id,
        "episodes": episodes,
        "seed": 10_000,
        "deterministic": True,
        "device": "cpu",
        "obs_noise": 0.0,
        "max_episode_steps": None,
        "max_steps": 100_000,
    }


def evaluation_key(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """What a run's saved evaluations depend on: the bytes of its final and best checkpoints
    (SHA-256: the weights, the normaliser, the config they hold), every evaluation setting,
    the evaluator's format and torch's version."""
    return {
        "format": EVAL_FORMAT,
        "torch": torch.__version__,
        **{
            f"{which}_sha256": sha256(RunFolder(run_dir).checkpoint(which))
            for which in ("final", "best")
        },
        **settings,
    }


def final_and_best(run_dir: Path, env_id: str, episodes: int, writable: bool) -> dict[str, Any]:
    """The returns of the run's final and best checkpoints on the comparison's episodes: those
    saved in the run folder (``RunFolder.evaluations``) if its key still matches (the same
    weights, the same settings), else evaluated now and saved (when the folder is writable)."""
    settings = evaluation_settings(env_id, episodes)
    key = evaluation_key(run_dir, settings)
    folder = RunFolder(run_dir)
    cached = cached_evaluations(folder.evaluations, key)
    if cached:
        return cached
    evals: dict[str, Any] = {"key": key}
    for which in ("final", "best"):
        path = folder.checkpoint(which)
        policy, _, _ = load_checkpoint(path, env_id=env_id)
        evals[which] = evaluate(policy, **settings).returns.tolist()
    # Saved only if the checkpoints did not change while they were read (a folder that is only
    # read is not locked): the key then names the weights evaluated.
    if writable and evaluation_key(run_dir, settings) == key:
        atomic_write_text(folder.evaluations, json.dumps(evals))
    return evals


def cached_evaluations(path: Path, key: dict[str, Any]) -> dict[str, Any]:
    """The evaluations an earlier comparison saved, if they were made with ``key`` (the same
    checkpoints and settings) and are whole ({} otherwise: they are made again)."""
    try:
        evals = read_json(path)
    except UsageError:
        return {}
    whole = all(
        isinstance(evals.get(k), list)
        and len(evals[k]) == key["episodes"]
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in evals[k])
        for k in ("final", "best")
    )
    return evals if whole and evals.get("key") == key else {}

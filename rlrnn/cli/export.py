"""``rlrnn export``: a trained policy as ONNX and TorchScript files with a sidecar JSON, to run
without rlrnn (:mod:`rlrnn.tools.export.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlrnn.cli.options import HelpFormatter
from rlrnn.runs.folder import RunFolder

FORMATS = ("onnx", "torchscript", "all")  # as rlrnn.tools.export.export.FORMATS (imported when run)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained policy (ONNX, TorchScript) with its state",
        description="Write a trained policy as policy.onnx (a pure function (obs, state...,"
        " episode_start) -> (action, logits, state...) with a dynamic batch axis) and/or"
        " policy.pt (a TorchScript module with reset() and act(obs)), and policy.json (shapes,"
        " names, the env and the checkpoint's SHA-256), into a new folder.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory or a checkpoint file (.pt)")
    p.add_argument(
        "--checkpoint", choices=tuple(RunFolder.CHECKPOINTS), default="best", help="for run dirs"
    )
    p.add_argument("--format", choices=FORMATS, default="all", help="what to write")
    p.add_argument(
        "--out", type=Path, required=True, help="the folder to write: new, or an empty one"
    )
    p.add_argument(
        "--env",
        dest="env_id",
        help="trust a module:EnvId the checkpoint names (its module is imported)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rlrnn.tools.export.export import SIDECAR, export

    out = export(args.run, args.out, args.format, args.checkpoint, env_id=args.env_id)
    files = sorted(path.name for path in out.iterdir())
    print(f"Exported {args.run} to {out}/: {', '.join(files)} (shapes and names in {SIDECAR})")
    return 0

"""``rlrnn agents``: the agents ``--agent`` accepts and what each one's tuned defaults change."""

from __future__ import annotations

import argparse

from agents import AGENTS
from rlrnn.learning.config import SB3_AGENTS
from rlrnn.learning.hyperparams import describe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agents",
        help="list the agents and their tuned defaults",
        description="The agents --agent accepts, and what each one's tuned defaults change"
        " (rlrnn/learning/hyperparams.py); options on the command line override them.",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    descriptions = {name: text for name, (_, text) in AGENTS.items()} | SB3_AGENTS
    for name, text in descriptions.items():
        print(f"{name:18} {text}\n{'':18} defaults: {describe(name)}")
    return 0

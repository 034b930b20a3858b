"""avatex reconstruct: not implemented yet."""

from __future__ import annotations

import argparse

HELP = "(not implemented yet)"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from backend.cli import not_yet

    return not_yet("reconstruct", "see the project's issues")

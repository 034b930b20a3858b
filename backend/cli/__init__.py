"""The ``avatex`` command line: one module per subcommand, each with ``configure(parser)`` and ``run(args)``.

A module's ``PATHS`` names its path options; they are made absolute (relative to the current
directory) before ``run`` (:mod:`backend.cli.paths`).

Subcommand modules must import cheaply (no torch, no bpy at module level) so that ``avatex --help`` and
the argument parsing of every command stay fast; the work happens inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import AvatexError, CancelledError

# name -> module under backend.cli. Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "synth": "synth",
    "render": "render",
    "train": "train",
    "train-hd": "train_hd",
    "mask": "mask",
    "reconstruct": "reconstruct",
    "evaluate": "evaluate",
    "table": "table",
    "experiment": "experiment",
    "protocol": "protocol",
    "patch-study": "patch_study",
    "serve": "serve",
    "keys": "keys",
    "weights": "weights",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or, when ``command`` is named, one whose other subcommands are left unconfigured.

    Configuring a subcommand imports its module; ``avatex evaluate ...`` should not pay for importing
    ``train``'s config classes or the demo's assets, so :func:`main` names the command it saw.
    """
    from backend import __version__

    parser = argparse.ArgumentParser(
        prog="avatex",
        description="Relit human datasets in Blender, PIFu reconstruction with lighting-robust colour, "
        "and PATD/PIPATD texture audits.",
    )
    parser.add_argument("--version", action="version", version=f"avatex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name)
            continue
        module = importlib.import_module(f"backend.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.configure(p)
        p.set_defaults(_run=module.run, _paths=tuple(getattr(module, "PATHS", ())))
    return parser


def _named_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` starts with, if any (``avatex --help`` and the like configure them all)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from backend.cli.paths import resolve

    resolve(args, args._paths)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("avatex: interrupted", file=sys.stderr)
        return 130
    except (AvatexError, CancelledError) as exc:
        print(f"avatex {args.command}: error: {exc}", file=sys.stderr)
        return 2


def not_yet(command: str, issue: str) -> int:
    """What a subcommand that is not built yet prints, and its exit status."""
    print(f"avatex {command}: not implemented yet ({issue}).", file=sys.stderr)
    return 3

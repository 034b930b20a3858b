"""backend.cli.dataclass_args: flags generated from a dataclass; ``avatex train``'s flags from TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from backend.cli.dataclass_args import add_fields, field_docs, given


@dataclass
class Demo:
    mode: Literal["fast", "exact"] = "exact"
    """how to run"""
    size: int = 64
    """edge length"""
    scale: float | None = None
    names: list[str] = field(default_factory=lambda: ["a", "b"])
    """names to use"""
    bar: bool = True
    """progress bar"""
    verbose: bool = False
    """chatty output"""


def _parser(names: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo")
    add_fields(parser, Demo, names)
    return parser


def _action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in parser._actions if a.dest == dest)


def test_a_literal_field_becomes_choices_and_rejects_other_values(capsys):
    parser = _parser(["mode"])
    assert tuple(_action(parser, "mode").choices) == ("fast", "exact")
    assert parser.parse_args(["--mode", "fast"]).mode == "fast"
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "slow"])
    assert "invalid choice: 'slow'" in capsys.readouterr().err


def test_types_defaults_and_help_come_from_the_dataclass():
    parser = _parser(["size", "scale", "names", "bar", "verbose"])
    args = parser.parse_args(["--size", "8", "--scale", "0.5", "--names", "x", "y", "--no-bar", "--verbose"])
    assert (args.size, args.scale, args.names, args.bar, args.verbose) == (8, 0.5, ["x", "y"], False, True)
    text = parser.format_help()
    assert "edge length (default 64)" in text and "names to use (default a b)" in text
    assert "--no-bar" in text and "no progress bar" in text and "--verbose" in text
    # changing the dataclass default changes the help: nothing restates it
    Other = dataclasses.make_dataclass("Other", [("size", int, dataclasses.field(default=7))])
    p2 = argparse.ArgumentParser()
    add_fields(p2, Other, ["size"])
    assert "default 7" in p2.format_help()


def test_only_given_flags_are_returned_so_a_config_file_keeps_its_values():
    parser = _parser(["mode", "size", "bar"])
    assert given(parser.parse_args([]), ["mode", "size", "bar"]) == {}
    assert given(parser.parse_args(["--size", "3"]), ["mode", "size", "bar"]) == {"size": 3}


def test_field_docs_reads_attribute_docstrings():
    assert field_docs(Demo) == {"mode": "how to run", "size": "edge length", "names": "names to use",
                                "bar": "progress bar", "verbose": "chatty output"}


def test_avatex_train_flags_follow_train_config():
    from backend.cli import build_parser
    from backend.train.config import TrainConfig

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    assert tuple(_action(train, "loss").choices) == ("l1", "ssim", "l1+ssim")
    assert tuple(_action(train, "stage").choices) == ("geometry", "color", "both")
    assert tuple(_action(train, "model").choices) == ("small", "official")
    defaults = TrainConfig()
    text = train.format_help()
    assert f"(default {defaults.batch})" in " ".join(_action(train, "batch").help.split())
    assert f"(default {defaults.loss})" in _action(train, "loss").help
    assert "--no-progress-bar" in text and "--init-g" in text and "--set" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--loss", "l2"])

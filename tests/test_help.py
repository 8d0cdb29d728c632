"""Truthful --help: every option of every command says what it does, and the default it states
is the one argparse applies."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from nas.cli import export, replay, search
from nas.cli.common import Parser, positive_int
from nas.tools import bench, fidelity

COMMANDS = {"search": search.main, "export": export.main, "replay": replay.main,
            "bench": bench.main, "fidelity": fidelity.main}
# "(default 3)", "(default 3: why)", "(default 5; 0: none)", a help that opens "default X";
# with a colon, "(default: words)", a description instead of a value.
STATED = re.compile(r"(?:^|\()default(?P<colon>:?)\s+(?P<rest>[^)]*)")


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(main, monkeypatch) -> argparse.ArgumentParser:
    """The command's parser, taken at its parse_args call (so nothing else runs)."""
    def grab(self, *args, **kwargs):
        raise _Caught(self)

    monkeypatch.setattr(Parser, "parse_args", grab)
    with pytest.raises(_Caught) as e:
        main([])
    return e.value.parser


def expanded_help(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    """The help line as --help prints it: %(default)s and the like filled in."""
    params: dict[str, Any] = {k: v for k, v in vars(a).items() if v is not argparse.SUPPRESS}
    if a.choices is not None:
        params["choices"] = ", ".join(map(str, a.choices))
    return (a.help or "") % {**params, "prog": parser.prog}


def _spellings(value: object) -> set[str]:
    """How a help line may write ``value``: 20000 as "20000" or "20,000", [2, 4] as "2,4", a
    folder with or without its trailing slash."""
    out = {str(value)}
    if isinstance(value, int) and not isinstance(value, bool):
        out.add(f"{value:,}")
    if isinstance(value, (list, tuple)):
        out.add(",".join(map(str, value)))
    if isinstance(value, Path):
        out.add(f"{value}/")
    return out


def _means(text: str, a: argparse.Action) -> bool:
    """Whether ``text``, as the user would type it, gives ``a``'s default."""
    if text in _spellings(a.default):
        return True
    try:
        return a.type is not None and a.type(text) == a.default
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return False


def default_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Each option whose help misstates its default, in words: a stated value that is not
    argparse's default (or a value stated for an option whose default is computed later:
    None, unless it is a ``<template>``); a description that does not contain the default;
    a default not stated at all. Switches (no value) say nothing: their default is "off"."""
    problems = []
    for a in parser._actions:
        if not a.option_strings or a.dest == "help" or a.nargs == 0:
            continue
        flag, text = a.option_strings[0], expanded_help(parser, a)
        m = STATED.search(text)
        if m is None:
            if a.default not in (None, [], argparse.SUPPRESS):
                problems.append(f"{flag} does not state its default {a.default!r}")
            continue
        if m["colon"]:  # a description: it must name the value, when there is one
            if a.default is not None and not any(v in m["rest"] for v in _spellings(a.default)):
                problems.append(f"{flag} describes its default as {m['rest']!r}, which does "
                                f"not say {a.default!r}")
            continue
        value = re.match(r"[^\s;]+", m["rest"])
        stated = value[0].rstrip(",:") if value else ""
        if a.default is None:
            if "<" not in stated:
                problems.append(f"{flag} states the default {stated!r}, argparse has none")
        elif not _means(stated, a):
            problems.append(f"{flag} states the default {stated!r}, argparse's is "
                            f"{a.default!r}")
    return problems


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_that_states_its_real_default(name, monkeypatch):
    p = parser_of(COMMANDS[name], monkeypatch)
    options = [a for a in p._actions if a.option_strings and a.dest != "help"]
    assert options
    for a in options:
        flag = a.option_strings[0]
        assert a.help and a.help.strip(), f"{name} {flag} has no help"
        if a.dest == "data_dir":
            assert "MNIST/raw" in a.help and "IDX" in a.help and "gz" in a.help, a.help
        if a.dest == "seed":
            assert "seed" in a.help.lower() and len(a.help) > 30, a.help
    assert default_problems(p) == [], name
    p.format_help()  # every %(...)s expands


def test_a_help_that_misstates_its_default_is_caught():
    p = Parser(prog="demo")
    p.add_argument("--rounds", type=positive_int, default=4, help="a/b pairs (default 3)")
    p.add_argument("--name", default=None, help="the study (default mnist)")
    p.add_argument("--size", type=positive_int, default=7, help="images per batch")
    p.add_argument("--images", type=positive_int, default=60_000,
                   help="per measurement (default: one 50,000-image epoch)")
    # and what is right: a value, a template, a description of a computed default, a switch
    p.add_argument("--budget", type=positive_int, default=20_000, help="(default 20,000)")
    p.add_argument("--trials", type=positive_int, default=100, help="(default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("results"), help="(default results/)")
    p.add_argument("--study", default=None, help="default mnist-<max-params>p")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the study's")
    p.add_argument("--quick", action="store_true", help="a first run")
    assert [x.split()[0] for x in default_problems(p)] == ["--rounds", "--name", "--size",
                                                           "--images"]

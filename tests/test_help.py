"""Truthful --help: every option of every command says what it does and shows its default."""

from __future__ import annotations

import argparse

import pytest

from nas.tools import bench, fidelity
from nas.cli import export, replay, search
from nas.cli.common import Parser

COMMANDS = {"search": search.main, "export": export.main, "replay": replay.main,
            "bench": bench.main, "fidelity": fidelity.main}


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


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_with_its_default(name, monkeypatch):
    p = parser_of(COMMANDS[name], monkeypatch)
    options = [a for a in p._actions if a.option_strings and a.dest != "help"]
    assert options
    for a in options:
        flag = a.option_strings[0]
        assert a.help and a.help.strip(), f"{name} {flag} has no help"
        shows_default = "%(default)" in a.help or "default" in a.help.lower()
        if a.default not in (None, False, [], argparse.SUPPRESS):
            assert shows_default, f"{name} {flag} does not show its default {a.default!r}"
        if a.dest == "data_dir":
            assert "MNIST/raw" in a.help and "IDX" in a.help and "gz" in a.help, a.help
        if a.dest == "seed":
            assert "seed" in a.help.lower() and len(a.help) > 30, a.help
    p.format_help()  # every %(...)s expands

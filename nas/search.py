"""``python -m nas.search``: see :mod:`nas.cli.search`."""
from __future__ import annotations

from nas.cli.search import cli

if __name__ == "__main__":
    cli()

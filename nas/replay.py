"""``python -m nas.replay``: see :mod:`nas.cli.replay`."""
from __future__ import annotations

from nas.cli.replay import cli

if __name__ == "__main__":
    cli()

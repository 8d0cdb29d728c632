"""``python -m nas.export``: see :mod:`nas.cli.export`."""
from __future__ import annotations

from nas.cli.export import cli

if __name__ == "__main__":
    cli()

"""``python -m nas.bench``: see :mod:`nas.tools.bench`."""
from __future__ import annotations

from nas.tools.bench import cli

if __name__ == "__main__":
    cli()

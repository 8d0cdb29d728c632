"""``python -m nas.fidelity``: see :mod:`nas.tools.fidelity`."""
from __future__ import annotations

from nas.tools.fidelity import cli

if __name__ == "__main__":
    cli()

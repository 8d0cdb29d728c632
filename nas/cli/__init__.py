"""The command-line layer: shared parsing and the one-line fault handler, and the entry
points' mains (``python -m nas.search|export|replay`` run them)."""

"""Applications beside the core: the benchmark and the fidelity study."""

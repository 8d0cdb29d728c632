"""nas: neural-architecture search for tiny MNIST CNNs under a hard parameter budget."""

__version__ = "0.1.0"

"""What a network is: the spec (frozen data), its plan (shapes, parameters, receptive field),
the pure builder, the reference networks, and the architecture space. No Optuna, no study."""

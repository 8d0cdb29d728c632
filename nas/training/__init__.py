"""How a network is trained: data loading and the validation split, on-device augmentation,
the trainer and its typed config, seed batching, the training space, and what the host's CPU
offers (its flags, the thread count of a training process). No Optuna study."""

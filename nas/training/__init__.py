"""How a network is trained: data loading and the validation split, on-device augmentation,
the trainer and its typed config, seed batching, and the training space. No Optuna study."""

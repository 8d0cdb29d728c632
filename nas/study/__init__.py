"""An Optuna study of candidates: the record (the only module naming stored keys), storage,
artifacts, worker processes, the objective, the runner, the plan and the summary."""

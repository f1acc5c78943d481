"""Tune an agent's hyperparameters with Optuna, over workers sharing one study."""

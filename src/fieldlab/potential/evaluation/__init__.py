"""Evaluation: the zero-shot scores at base and 2x, the learned predictors against the classical rivals, the front."""

"""Training: the operator's and the sub-grid corrector's loops, run state, learning-rate schedule and run log."""

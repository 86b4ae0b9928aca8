"""Prediction: the default predictor, the hybrid's solver sweeps, the sub-grid correction and predicting files."""

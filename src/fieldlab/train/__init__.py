"""Training loops: the operator trainer and the INR fit."""

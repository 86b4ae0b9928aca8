"""Potential study: limb physics and FEM ground truth, the operator models, their training and zero-shot evaluation."""

"""Shared utilities: seeding, device selection, atomic file output, masking, metrics, figures, checkpoints."""

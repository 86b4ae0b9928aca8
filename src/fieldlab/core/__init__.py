"""The floor every study stands on: atomic file output, seeding, device selection, checkpoints and DDP."""

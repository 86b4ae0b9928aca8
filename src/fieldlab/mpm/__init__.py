"""2D multi-material MLS-MPM simulation producing per-particle F, Jp, S, C fields."""

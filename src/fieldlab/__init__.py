"""fieldlab: reproducible learning of physical fields (potential operators and INRs of MPM fields)."""

__version__ = "0.1.0"

"""The finite-element core: Q1 assembly, multigrid, the solver, transfers, the coarse prior and the error estimate."""

"""The finite-element core: Q1 assembly on voxel grids, multigrid, the solver, coarse transfers and the error
estimate."""

"""The classical rivals: multigrid-CG stopped early, the two-grid cycle, FEM at coarser spacings, the prior's cost."""

"""fieldlab: reproducible learning of physical fields (potential operators and INRs of MPM fields)."""

import os

# NumPy's OpenBLAS on one thread unless the user says otherwise (set before NumPy loads, so it holds wherever
# fieldlab is imported first: the stages, the CLI). The solver's BLAS calls are vector operations on 1e5-1e6
# unknowns, where a second BLAS thread gains nothing and, beside torch's own threads in the same process, costs
# 2-3x: the 2 mm multigrid-CG solve of a 2x sample took 0.63-0.78 s with two threads and 0.20 s with one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

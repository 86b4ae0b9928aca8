"""BLAS threads of a fieldlab run, set at its edge (a stage or a CLI command), never on import.

The solver's BLAS calls are vector operations on 1e5-1e6 unknowns, where a second BLAS thread gains nothing and,
beside torch's own threads in the same process, costs 2-3x: the 2 mm multigrid-CG solve of a 2x sample took
0.63-0.78 s with two OpenBLAS threads and 0.20 s with one (2 cores). :func:`blas_threads` limits every BLAS library
loaded in the process (NumPy's and SciPy's OpenBLAS builds) for the duration of a run, with ``threadpoolctl``, so a
library user's own NumPy keeps its threads and an explicit ``OPENBLAS_NUM_THREADS`` still wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: BLAS threads of a run unless the user sets OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS).
DEFAULT_BLAS_THREADS = 1
#: Environment variables through which a user chooses the BLAS threads, first set wins (OpenBLAS's own order).
USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def run_threads(default: int = DEFAULT_BLAS_THREADS) -> int:
    """The BLAS threads of a run: the first of :data:`USER_SETTINGS` set to a positive integer, else ``default``."""
    for name in USER_SETTINGS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return default


@contextmanager
def blas_threads(limit: int | None = None) -> Iterator[None]:
    """Limit the BLAS libraries of this process to ``limit`` threads (:func:`run_threads` when ``None``) inside the
    block, then restore them.

    NumPy and SciPy (each ships its own OpenBLAS) are loaded first, so the limit reaches both. The limit is set
    whatever the libraries run with now: a process whose environment was changed after OpenBLAS loaded (Dask's
    nanny sets ``OMP_NUM_THREADS=1`` and ``OPENBLAS_NUM_THREADS=1`` in the process that starts a LocalCluster) still
    computes with the threads its environment names, so a run's floating point does not depend on what ran before.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS, so the limit sees it)
    import scipy.linalg  # noqa: F401  (likewise SciPy's)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=run_threads() if limit is None else limit, user_api="blas"):
        yield

"""BLAS threads: set around a run (the stages' and the CLI's ``guarded``), never by importing fieldlab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy  # noqa: F401  (loads NumPy's BLAS before the checks)
import pytest
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_info, threadpool_limits

from fieldlab.cli import guarded
from fieldlab.core.threads import USER_SETTINGS, blas_threads

SRC = Path(__file__).resolve().parents[2] / "src"


def blas_counts() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def no_user_setting(monkeypatch):
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_importing_fieldlab_leaves_the_environment_and_blas_alone():
    """The issue's check, in a fresh interpreter: no OPENBLAS_NUM_THREADS, and NumPy loaded first keeps its threads."""
    code = (
        "import json, os; from threadpoolctl import threadpool_info, threadpool_limits; import numpy\n"
        "threadpool_limits(limits=2, user_api='blas')\n"
        "import fieldlab, fieldlab.potential.physics.fem.solver\n"
        "print(json.dumps([os.environ.get('OPENBLAS_NUM_THREADS'),"
        " [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS} | {"PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    variable, counts = json.loads(out.stdout)
    assert variable is None
    assert counts and all(n == 2 for n in counts)


def test_a_run_has_one_blas_thread_and_restores_the_caller_s(no_user_setting):
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_counts() and all(n == 2 for n in blas_counts())
        with blas_threads():
            inside = blas_counts()
        after = blas_counts()
    assert inside and all(n == 1 for n in inside)  # NumPy's and SciPy's OpenBLAS both
    assert all(n == 2 for n in after)


def test_guarded_runs_the_stage_with_one_blas_thread(no_user_setting):
    seen: list[list[int]] = []
    with threadpool_limits(limits=2, user_api="blas"):
        assert guarded(lambda: seen.append(blas_counts()) or 0) == 0
    assert seen[0] and all(n == 1 for n in seen[0])


def test_the_user_s_setting_wins(monkeypatch):
    """OPENBLAS_NUM_THREADS=2 gives a run two threads, even where the libraries run with one now."""
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with threadpool_limits(limits=1, user_api="blas"), blas_threads():
        assert blas_counts() and all(n == 2 for n in blas_counts())


def test_a_cluster_started_in_the_process_does_not_change_a_run_s_threads(monkeypatch):
    """Starting a LocalCluster sets OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1 in this process (Dask's nanny)
    after OpenBLAS has loaded; a run afterwards still computes with one BLAS thread, as one before it did."""
    from fieldlab.config import ClusterConfig
    from fieldlab.core.cluster import open_client

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.setenv(name, "")  # recorded, so what the nanny sets is undone after the test
        monkeypatch.delenv(name)
    with threadpool_limits(limits=2, user_api="blas"):
        with blas_threads():
            before = blas_counts()
        with open_client(ClusterConfig(address="local", workers=1)):
            pass
        with blas_threads():
            after = blas_counts()
    assert before == after and all(n == 1 for n in after)

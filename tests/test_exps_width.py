"""`make exps` keeps its promise: `dvc exp show` of the Makefile's columns fits 200 columns and shows the headline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The width `make exps` promises (Makefile help line and README).
WIDTH = 200


def exp_columns(makefile: str) -> str:
    """The ``EXP_COLUMNS`` pattern of the Makefile as dvc receives it (make's ``$$`` is one ``$``).

    Examples
    --------
    >>> exp_columns("X = 1\\nEXP_COLUMNS ?= Experiment|base.rel_l2$$|^slope\\n")
    'Experiment|base.rel_l2$|^slope'
    """
    match = re.search(r"^EXP_COLUMNS \?= (.+)$", makefile, re.M)
    assert match is not None, "Makefile: no `EXP_COLUMNS ?= ...` line"
    return match.group(1).strip().replace("$$", "$")


def test_make_exps_fits_200_columns_and_keeps_the_headline():
    """The table `make exps` prints for this repository, on a terminal wide enough not to squeeze it."""
    columns = exp_columns((REPO / "Makefile").read_text())
    assert "--keep '$(EXP_COLUMNS)'" in (REPO / "Makefile").read_text()  # the target passes the same pattern
    dvc = Path(sys.executable).parent / "dvc"
    env = {**os.environ, "COLUMNS": "400", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(
        [str(dvc), "exp", "show", "--drop", ".*", "--keep", columns, "--no-pager"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if "Experiment" in line).split()
    for name in ("default.base.rel_l2", "default.x2.rel_l2"):
        assert name in header, header
    widest = max(len(line.rstrip()) for line in lines)
    assert widest <= WIDTH, f"`make exps` is {widest} columns wide (promised: {WIDTH})"

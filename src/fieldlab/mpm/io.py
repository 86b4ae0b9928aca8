"""Files of the MPM corpus: ``<root>/<scene>/trajectory.npz`` (arrays) and ``manifest.json`` (parameters).

``trajectory.npz`` holds float32 ``x``, ``v`` (T, N, 2), ``F``, ``S``, ``C`` (T, N, 2, 2), ``Jp`` (T, N), ``t`` (T,)
and integer ``material`` (N,) (0 liquid, 1 jelly, 2 snow), ``particle_id`` (N,). Both files are written atomically.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from fieldlab.core.io import save_npz, write_json
from fieldlab.errors import InputError
from fieldlab.mpm.trajectory import FIELD_SHAPES, MPMTrajectory

TRAJECTORY_FILE = "trajectory.npz"
MANIFEST_FILE = "manifest.json"
REQUIRED = (*FIELD_SHAPES, "t", "material", "particle_id")


def save_trajectory(traj: MPMTrajectory, directory: str | Path) -> Path:
    """Write ``trajectory.npz`` (uncompressed: float fields barely compress) and ``manifest.json``; return the dir."""
    directory = Path(directory)
    save_npz(directory / TRAJECTORY_FILE, compressed=False, **traj.arrays())
    write_json(directory / MANIFEST_FILE, traj.meta)
    return directory


def load_trajectory(path: str | Path) -> MPMTrajectory:
    """Load a trajectory from its directory or its ``trajectory.npz`` (the manifest next to it is optional).

    Raises
    ------
    InputError
        The file is missing, is not an npz, lacks an array, or an array has the wrong shape or dtype.

    Examples
    --------
    >>> load_trajectory("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fieldlab.errors.InputError: /nonexistent/trajectory.npz: trajectory file not found ...
    """
    path = Path(path)
    npz = path / TRAJECTORY_FILE if path.suffix != ".npz" else path
    if not npz.is_file():
        raise InputError(f"{npz}: trajectory file not found (run `fieldlab simulate-mpm` or `dvc repro simulate_mpm`)")
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in REQUIRED if k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{npz}: not a readable .npz file ({exc.__class__.__name__})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise InputError(f"{npz}: missing array(s) {', '.join(missing)}; expected {', '.join(REQUIRED)}")
    meta = {}
    manifest = npz.parent / MANIFEST_FILE
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest}: not valid JSON (line {exc.lineno})") from None
    try:
        return MPMTrajectory(**arrays, meta=meta)
    except InputError as exc:
        raise InputError(f"{npz}: {exc}") from None

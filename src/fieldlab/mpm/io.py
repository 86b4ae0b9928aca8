"""Files of the MPM corpus: ``<root>/<scene>/trajectory.npz`` (arrays) and ``manifest.json`` (parameters).

``trajectory.npz`` holds float32 ``x``, ``v`` (T, N, 2), ``F``, ``S``, ``C`` (T, N, 2, 2), ``Jp`` (T, N), ``t`` (T,)
and integer ``material`` (N,) (0 liquid, 1 jelly, 2 snow), ``particle_id`` (N,). Both files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fieldlab.core.io import load_npz, save_npz, write_json
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
        The file is missing, is not an npz, lacks an array, an array has the wrong shape or dtype, or a particle
        field holds NaN or infinity.

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
    arrays = load_npz(npz, REQUIRED, what="an MPM trajectory")
    meta = {}
    manifest = npz.parent / MANIFEST_FILE
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest}: not valid JSON (line {exc.lineno})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{manifest}: not readable UTF-8 text ({exc.__class__.__name__})") from None
        if not isinstance(meta, dict):
            raise InputError(f"{manifest}: holds a JSON {type(meta).__name__}; expected an object of parameters")
    try:
        traj = MPMTrajectory(**arrays, meta=meta)
    except InputError as exc:
        raise InputError(f"{npz}: {exc}") from None
    for name in FIELD_SHAPES:
        bad = int(np.size(arrays[name]) - np.isfinite(arrays[name]).sum())
        if bad:
            raise InputError(f"{npz}: {name} holds {bad} non-finite value(s); expected finite particle fields")
    return traj

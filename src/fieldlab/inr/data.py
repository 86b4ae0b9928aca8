"""One MPM field over a window of frames, standardised per component, with the INR input coordinates.

Shapes: particles ``(T, N, ...)``; a field is flattened to ``(T, N, C)`` components (F, S, C: ``C = 4`` in the
order ``11, 12, 21, 22``; Jp: ``C = 1``). Targets are standardised per component,
``y_std = (y - mean_c) / std_c``, with mean and std over all frames and particles of the window.

Coordinates of the per-point models, before the ``period`` division, are in ``[-1, 1]`` for SIREN and ``[0, 1]``
for the hash grid: time ``2 k / (T - 1) - 1`` for frame ``k`` of the window, position ``2 x - 1`` (the MPM domain
is the unit square), particle id ``2 i / (N - 1) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

from fieldlab.core.io import load_npz
from fieldlab.errors import ConfigError, InputError

#: components per field and their labels
FIELD_COMPONENTS: dict[str, tuple[str, ...]] = {
    "F": ("F11", "F12", "F21", "F22"),
    "Jp": ("Jp",),
    "S": ("S11", "S12", "S21", "S22"),
    "C": ("C11", "C12", "C21", "C22"),
}
#: trailing shape of each field in ``trajectory.npz``, after ``(T, N)``
FIELD_TAILS: dict[str, tuple[int, ...]] = {"F": (2, 2), "Jp": (), "S": (2, 2), "C": (2, 2)}


@dataclass(frozen=True)
class FieldWindow:
    """``n_frames`` frames of one field: values ``(T, N, C)``, positions ``(T, N, 2)``, frame indices ``(T,)``."""

    field_name: str
    values: np.ndarray
    positions: np.ndarray
    frames: np.ndarray
    material: np.ndarray
    #: first and last frame of the window the time coordinate spans (default: this window's own); a sub-window of
    #: held-out frames keeps its parent's span, so that a frame has one time coordinate in every sub-window
    t_span: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        t, n, c = self.values.shape
        if self.positions.shape != (t, n, 2) or self.frames.shape != (t,) or self.material.shape != (n,):
            raise InputError(
                f"field window: values {self.values.shape}, positions {self.positions.shape}, frames "
                f"{self.frames.shape}, material {self.material.shape}: expected (T, N, C), (T, N, 2), (T,), (N,)"
            )
        if len(FIELD_COMPONENTS[self.field_name]) != c:
            expected = len(FIELD_COMPONENTS[self.field_name])
            raise InputError(f"field {self.field_name}: {c} components, expected {expected}")

    @property
    def n_frames(self) -> int:
        return self.values.shape[0]

    @property
    def n_particles(self) -> int:
        return self.values.shape[1]

    @property
    def n_components(self) -> int:
        return self.values.shape[2]

    @property
    def n_values(self) -> int:
        return int(self.values.size)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-component mean and std ``(C,)`` over frames and particles (std of a constant component is 1)."""
        flat = self.values.reshape(-1, self.n_components).astype(np.float64)
        mean, std = flat.mean(0), flat.std(0)
        return mean, np.where(std > 0, std, 1.0)

    def time_coordinate(self) -> np.ndarray:
        """Frame position in the window's span ``(f0, f1)``, ``(T,)``: ``2 (frame - f0) / (f1 - f0) - 1`` in
        ``[-1, 1]`` (0 for a span of one frame); for a whole contiguous window, ``linspace(-1, 1, T)``."""
        lo, hi = self.t_span if self.t_span is not None else (int(self.frames[0]), int(self.frames[-1]))
        if hi == lo:
            return np.zeros(self.n_frames)
        return 2.0 * (self.frames.astype(np.float64) - lo) / (hi - lo) - 1.0

    def subset(self, frames: np.ndarray | None = None, particles: np.ndarray | None = None) -> FieldWindow:
        """The window restricted to frame positions ``frames`` and particle positions ``particles`` (index arrays
        into this window; ``None``: all), keeping this window's time span."""
        t = np.arange(self.n_frames) if frames is None else np.asarray(frames)
        n = np.arange(self.n_particles) if particles is None else np.asarray(particles)
        span = self.t_span if self.t_span is not None else (int(self.frames[0]), int(self.frames[-1]))
        return FieldWindow(self.field_name, self.values[np.ix_(t, n)], self.positions[np.ix_(t, n)],
                           self.frames[t], self.material[n], span)  # fmt: skip


def field_components(field_name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``(T, N, C)`` components of ``field_name`` from trajectory arrays (``(T, N)`` or ``(T, N, 2, 2)``)."""
    a = arrays[field_name]
    t, n = a.shape[:2]
    return a.reshape(t, n, -1)  # (T, N, 2, 2) -> (T, N, 4) in the order 11, 12, 21, 22; (T, N) -> (T, N, 1)


def load_field_window(path: str | Path, field_name: str, frame_start: int, n_frames: int) -> FieldWindow:
    """Read ``n_frames`` frames of ``field_name`` from an MPM ``trajectory.npz`` (or its directory).

    Raises
    ------
    InputError
        One line naming the file: it is missing or unreadable (truncated, empty, not an ``.npz``), lacks ``x``,
        the field or ``material``, an array has the wrong shape or dtype, or the window holds NaN or infinity.
    ConfigError
        The window ``[frame_start, frame_start + n_frames)`` is outside the recorded frames.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "trajectory.npz"
    if field_name not in FIELD_COMPONENTS:
        raise ConfigError(f"inr.field_name = {field_name!r}: expected one of {', '.join(FIELD_COMPONENTS)}")
    if not path.is_file():
        raise InputError(f"{path}: MPM trajectory not found (run the simulate_mpm stage first)")
    arrays = load_npz(path, ("x", field_name, "material"), what="an MPM trajectory")
    x, field, material = arrays["x"], arrays[field_name], arrays["material"]
    if x.ndim != 3 or x.shape[2] != 2 or min(x.shape) < 1:
        raise InputError(f"{path}: x has shape {x.shape}; expected (T, N, 2) positions with T, N >= 1")
    n_total, n = x.shape[:2]
    expected = {"x": (n_total, n, 2), field_name: (n_total, n, *FIELD_TAILS[field_name]), "material": (n,)}
    for name, want in expected.items():
        if arrays[name].shape != want:
            raise InputError(f"{path}: {name} has shape {arrays[name].shape}; expected {want} (T, N from x)")
    for name in ("x", field_name):
        if arrays[name].dtype.kind != "f":
            raise InputError(f"{path}: {name} has dtype {arrays[name].dtype}; expected floating point (float32)")
    if material.dtype.kind not in "iu":
        raise InputError(f"{path}: material has dtype {material.dtype}; expected integer labels")
    if frame_start + n_frames > n_total:
        raise ConfigError(
            f"inr.frame_start + inr.n_training_frames = {frame_start} + {n_frames}: expected <= {n_total}, "
            f"the frames recorded in {path}"
        )
    window = slice(frame_start, frame_start + n_frames)
    positions = np.asarray(x[window], dtype=np.float32)
    values = np.asarray(field_components(field_name, {field_name: field[window]}), dtype=np.float32)
    last = frame_start + n_frames - 1
    for name, arr in (("x", positions), (field_name, values)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{path}: {name} has non-finite values in frames {frame_start}..{last}")
    frames = np.arange(frame_start, frame_start + n_frames)
    return FieldWindow(field_name, values, positions, frames, material)


def map_resolution(n_particles: int) -> int:
    """Cells per side of the middle-frame maps (SSIM, panel): ``clip(sqrt(N / 2), 16, 64)``."""
    return int(np.clip(np.sqrt(n_particles / 2), 16, 64))


def particle_grid(
    positions: np.ndarray, values: np.ndarray, resolution: int, bounds: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Average particle values per cell of a ``resolution x resolution`` grid over ``bounds``.

    Parameters
    ----------
    positions, values
        ``(N, 2)`` positions and ``(N,)`` values of one frame.
    bounds
        ``(x_min, x_max, y_min, y_max)`` of the grid.

    Returns
    -------
    image, mask
        ``(resolution, resolution)`` map (row = y, column = x) and the occupied cells. Empty cells take the value
        of the nearest occupied cell, so that they neither add structure nor hide it in SSIM windows.
    """
    x0, x1, y0, y1 = bounds
    ix = np.clip(((positions[:, 0] - x0) / max(x1 - x0, 1e-12) * resolution).astype(int), 0, resolution - 1)
    iy = np.clip(((positions[:, 1] - y0) / max(y1 - y0, 1e-12) * resolution).astype(int), 0, resolution - 1)
    flat = iy * resolution + ix
    total = np.bincount(flat, weights=values.astype(np.float64), minlength=resolution * resolution)
    count = np.bincount(flat, minlength=resolution * resolution)
    image = (total / np.maximum(count, 1)).reshape(resolution, resolution)
    mask = (count > 0).reshape(resolution, resolution)
    nearest = distance_transform_edt(~mask, return_distances=False, return_indices=True)  # (2, R, R)
    return image[nearest[0], nearest[1]], mask


def synthetic_trajectory(n_frames: int = 16, n_particles: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """A smooth analytic trajectory in the MPM file layout (for tests, demos and benchmarks).

    Particles start uniformly in ``[0.3, 0.7]^2`` and move with ``x(t) = x0 + 0.1 t (cos(2 pi y0), sin(2 pi x0))``
    for ``t`` in ``[0, 1]``; every field is a smooth function of the Lagrangian ``(t, x0, y0)``, e.g.
    ``Jp = 1 + 0.2 sin(2 pi x0) cos(pi t) + 0.1 y0``.
    """
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0.3, 0.7, size=(n_particles, 2))
    t = np.linspace(0.0, 1.0, n_frames)
    tt, a, b = t[:, None], x0[None, :, 0], x0[None, :, 1]  # (T, 1), (1, N), (1, N)
    x = np.stack([a + 0.1 * tt * np.cos(2 * np.pi * b), b + 0.1 * tt * np.sin(2 * np.pi * a)], axis=-1)
    v = np.gradient(x, t, axis=0) if n_frames > 1 else np.zeros_like(x)

    def tensor(s: float) -> np.ndarray:
        m = np.empty((n_frames, n_particles, 2, 2))
        m[..., 0, 0] = 1 + s * np.sin(2 * np.pi * a) * np.cos(np.pi * tt)
        m[..., 0, 1] = s * np.cos(2 * np.pi * b) * tt
        m[..., 1, 0] = s * np.sin(np.pi * (a + b + tt))
        m[..., 1, 1] = 1 - s * np.cos(2 * np.pi * a * b) * np.sin(np.pi * tt)
        return m

    arrays = {
        "x": x,
        "v": v,
        "F": tensor(0.2),
        "Jp": 1 + 0.2 * np.sin(2 * np.pi * a) * np.cos(np.pi * tt) + 0.1 * b,
        "S": 50.0 * (tensor(0.5) - np.eye(2)),
        "C": 3.0 * (tensor(0.3) - np.eye(2)),
        "t": t,
    }
    out = {k: np.asarray(v_, dtype=np.float32) for k, v_ in arrays.items()}
    out["material"] = (np.arange(n_particles) * 3 // n_particles).astype(np.int32)
    out["particle_id"] = np.arange(n_particles, dtype=np.int64)
    return out

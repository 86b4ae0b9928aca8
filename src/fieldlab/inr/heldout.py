"""What a representation did not see: held-out frames and held-out particles of a window, split before the fit.

**Frames.** With ``inr.heldout_every = k >= 2``, the window positions ``i`` with ``i mod k = k // 2`` and
``0 < i < T - 1`` are held out (k = 4, T = 48: positions 2, 6, ..., 46, a quarter of the frames); the first and
last frames are always fitted, so every held-out frame lies between fitted ones (interpolation, never
extrapolation).

**Particles.** With ``inr.heldout_particles = f > 0``, ``round(f N)`` particles drawn by a permutation of
``numpy.random.default_rng(SPLIT_SEED)`` are held out of every fit, whatever the run's seed (a re-run under
another seed sees the same split). Only the coordinate models (``siren_txy``, ``ngp``) answer them; for the others
(POD, the hybrid, ``siren_t``, ``siren_id``) the score is ``null`` with ``heldout_particles_answerable: false``,
never a number.

The fit sees only ``window.subset(fit_frames, fit_particles)``; :func:`heldout_scores` scores the representation
on the held-out frames (fitted particles) and on the held-out particles (fitted frames) with the project's R2
(values centred by the scored truth's per-component mean, :func:`fieldlab.inr.fit.score_prediction`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fieldlab.config import INRConfig
from fieldlab.errors import ConfigError
from fieldlab.inr.data import FieldWindow
from fieldlab.inr.fit import FitResult, score_prediction
from fieldlab.inr.represent import answers_unseen_particles, network_config, predict_at

SPLIT_SEED = 0  # the particle split depends on N and the fraction only


@dataclass(frozen=True)
class HeldoutSplit:
    """Window positions of the fitted and held-out frames, and of the fitted and held-out particles (sorted)."""

    fit_frames: np.ndarray
    heldout_frames: np.ndarray
    fit_particles: np.ndarray
    heldout_particles: np.ndarray

    @property
    def active(self) -> bool:
        return bool(self.heldout_frames.size or self.heldout_particles.size)


def heldout_split(n_frames: int, n_particles: int, every: int, particle_fraction: float) -> HeldoutSplit:
    """The split of a ``(n_frames, n_particles)`` window (module docstring).

    Examples
    --------
    >>> s = heldout_split(12, 10, every=4, particle_fraction=0.2)
    >>> s.heldout_frames.tolist(), s.fit_frames.tolist()[:4], s.heldout_particles.size, s.fit_particles.size
    ([2, 6, 10], [0, 1, 3, 4], 2, 8)

    Raises
    ------
    ConfigError
        ``every == 1`` (nothing left to fit), or a split that holds out nothing although asked to.
    """
    positions = np.arange(n_frames)
    held = np.zeros(n_frames, dtype=bool)
    if every == 1:
        raise ConfigError("inr.heldout_every = 1: expected 0 (off) or >= 2 (every k-th frame held out)")
    if every >= 2:
        held = (positions % every == every // 2) & (positions > 0) & (positions < n_frames - 1)
        if not held.any():
            raise ConfigError(
                f"inr.heldout_every = {every}: no interior frame of the {n_frames}-frame window is held out; "
                "expected a window of at least 3 frames and every <= n_training_frames - 1"
            )
    n_held = round(particle_fraction * n_particles)
    if particle_fraction > 0 and not 0 < n_held < n_particles:
        raise ConfigError(
            f"inr.heldout_particles = {particle_fraction:g}: holds out {n_held} of {n_particles} particles; "
            "expected at least one held out and one fitted"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n_particles)
    held_p = np.zeros(n_particles, dtype=bool)
    held_p[order[:n_held]] = True
    return HeldoutSplit(positions[~held], positions[held], np.flatnonzero(~held_p), np.flatnonzero(held_p))


def split_window(cfg: INRConfig, window: FieldWindow) -> tuple[FieldWindow, HeldoutSplit]:
    """The window the fit sees (held-out frames and particles removed) and the split."""
    split = heldout_split(window.n_frames, window.n_particles, cfg.heldout_every, cfg.heldout_particles)
    if not split.active:
        return window, split
    return window.subset(split.fit_frames, split.fit_particles), split


def _scored(prefix: str, window: FieldWindow, prediction: np.ndarray) -> dict:
    s = score_prediction(window, prediction)
    return {f"{prefix}_r2": s.stats.r2, f"{prefix}_slope": s.stats.slope, f"{prefix}_mse": s.stats.mse,
            f"{prefix}_ssim": s.ssim}  # fmt: skip


def heldout_scores(
    cfg: INRConfig, result: FitResult, window: FieldWindow, split: HeldoutSplit, device: torch.device
) -> dict:
    """Scores on the held-out frames and particles of ``window`` (the whole window, before the split).

    Keys: ``heldout_every``, ``heldout_frames`` (count) and, where frames are held out, ``heldout_frames_r2``,
    ``_slope``, ``_mse``, ``_ssim``; ``heldout_particles`` (count), ``heldout_particles_answerable`` and
    ``heldout_particles_r2`` (``None`` when not answerable), ``_slope``, ``_mse``, ``_ssim``.
    """
    out: dict = {"heldout_every": cfg.heldout_every, "heldout_frames": int(split.heldout_frames.size),
                 "heldout_particles": int(split.heldout_particles.size)}  # fmt: skip
    if split.heldout_frames.size:
        query = window.subset(split.heldout_frames, split.fit_particles)
        out |= _scored("heldout_frames", query, predict_at(cfg, result, query, device))
    if split.heldout_particles.size:
        answerable = result.pod is None and answers_unseen_particles(network_config(cfg).model)
        out["heldout_particles_answerable"] = answerable
        if answerable:
            query = window.subset(split.fit_frames, split.heldout_particles)
            out |= _scored("heldout_particles", query, predict_at(cfg, result, query, device))
        else:
            out |= {"heldout_particles_r2": None, "heldout_particles_slope": None, "heldout_particles_mse": None,
                    "heldout_particles_ssim": None}  # fmt: skip
    return out

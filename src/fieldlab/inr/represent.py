"""Every representation of a field window behind one call: an INR, a truncated SVD (POD), or POD plus an INR.

================  ==========================================================================  ====================
``inr.model``     prediction ``y(t, n)``                                                      stored floats
================  ==========================================================================  ====================
INR kinds         ``net(inputs(t, n)) * std_c + mean_c`` (:mod:`fieldlab.inr.fit`)            network parameters
``pod``           ``m_c + sum_k A_k(t, c) V_k(n)``, rank ``inr.pod.rank``                     ``r (T C + N) + C``
``pod_residual``  ``pod(t, n) + rms_c * net(inputs(t, n))``, the net fitted to ``y - pod``    both
================  ==========================================================================  ====================

The hybrid's network (``inr.pod.residual_model``: ``ngp`` or ``siren_txy``, with the ``inr`` keys it reads)
learns the residual ``e = y - pod`` scaled by its per-component root mean square ``rms_c = sqrt(mean e_c^2)``
and not centred, so that a network that outputs zero gives back the POD exactly. Its seconds are the SVD's plus
the training's.

Between fitted frames (:func:`predict_at`) POD splines its temporal coefficients in time
(:meth:`~fieldlab.inr.models.pod.POD.at_frames`) and the networks take the frame's time coordinate; particles
outside the fit are answerable only by the coordinate models (``siren_txy``, ``ngp``), whose input is a position.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fieldlab.config import INRConfig
from fieldlab.inr.data import FieldWindow
from fieldlab.inr.fit import FitResult, fit_inr, predict, score_prediction, train_inr
from fieldlab.inr.models.pod import fit_pod
from fieldlab.inr.models.registry import COORDINATE_MODELS, count_parameters, make_inputs

POD_MODELS = ("pod", "pod_residual")


def network_config(cfg: INRConfig) -> INRConfig:
    """The config of the network a fit trains: ``cfg`` itself, or for ``pod_residual`` its residual model."""
    return replace(cfg, model=cfg.pod.residual_model) if cfg.model == "pod_residual" else cfg


def answers_unseen_particles(model: str) -> bool:
    """Whether ``inr.model = model`` can predict a particle it was not fitted on (its query is a position)."""
    return model in COORDINATE_MODELS


def fit_pod_window(cfg: INRConfig, window: FieldWindow) -> FitResult:
    """Rank-``inr.pod.rank`` POD of ``window`` (or the smallest rank reaching ``inr.pod.target_r2``), scored as the
    INRs; its ``losses`` are ``1 - R2`` of the fitted frames per rank (the spectrum's tail)."""
    pod = fit_pod(window.values, window.frames, cfg.pod.rank, cfg.pod.target_r2)
    pred = pod.reconstruct()
    s = score_prediction(window, pred)
    zero, one = np.zeros(window.n_components), np.ones(window.n_components)
    return FitResult(
        None, pred.astype(np.float32), pod.unexplained(), s.stats, s.r2_per_component, s.r2_pooled, s.ssim,
        pod.seconds, pod.n_stored, "cpu", zero, one, pod,
    )  # fmt: skip


def fit_pod_residual(
    cfg: INRConfig,
    window: FieldWindow,
    seed: int,
    device: torch.device,
    tb_dir: str | Path | None = None,
    progress: bool = False,
) -> FitResult:
    """POD of rank ``inr.pod.rank`` plus ``inr.pod.residual_model`` trained on its residual (module docstring)."""
    pod = fit_pod(window.values, window.frames, cfg.pod.rank, cfg.pod.target_r2)
    base = pod.reconstruct()  # (T, N, C) float64
    residual = replace(window, values=(window.values - base).astype(np.float32))
    rms = np.sqrt(np.mean(np.square(residual.values.reshape(-1, window.n_components), dtype=np.float64), 0))
    scale = (np.zeros(window.n_components), np.where(rms > 0, rms, 1.0))  # not centred: net = 0 gives the POD
    trained = train_inr(network_config(cfg), residual, seed, device, tb_dir, progress, scale=scale)
    pred = base + trained.prediction
    s = score_prediction(window, pred)
    n_params = pod.n_stored + count_parameters(trained.model)
    return FitResult(
        trained.model, pred.astype(np.float32), trained.losses, s.stats, s.r2_per_component, s.r2_pooled, s.ssim,
        pod.seconds + trained.seconds, n_params, str(device), trained.mean, trained.std, pod,
    )  # fmt: skip


def fit_representation(
    cfg: INRConfig,
    window: FieldWindow,
    seed: int,
    device: torch.device,
    tb_dir: str | Path | None = None,
    progress: bool = False,
) -> FitResult:
    """Fit ``cfg.model`` (any kind of the module docstring) to ``window`` and score it on every fitted value."""
    if cfg.model == "pod":
        return fit_pod_window(cfg, window)
    if cfg.model == "pod_residual":
        return fit_pod_residual(cfg, window, seed, device, tb_dir, progress)
    return fit_inr(cfg, window, seed, device, tb_dir, progress)


def predict_at(cfg: INRConfig, result: FitResult, query: FieldWindow, device: torch.device) -> np.ndarray:
    """The fitted representation at the frames and particles of ``query`` (physical units, ``(T', N', C)``).

    ``query`` is a sub-window of the fitted window's parent (:meth:`FieldWindow.subset`, same time span): frames
    between the fitted ones, and the fitted particles or, for a coordinate model, any particles.

    Raises
    ------
    ValueError
        The representation cannot answer the query (POD, ``siren_t`` or ``siren_id`` asked about particles other
        than the fitted ones).
    """
    out = np.zeros(query.values.shape, dtype=np.float64)
    if result.pod is not None:
        if query.n_particles != result.pod.modes.shape[1]:
            raise ValueError(f"{cfg.model}: {query.n_particles} particles asked, fitted on {result.pod.modes.shape[1]}")
        out += result.pod.at_frames(query.frames)
    if result.model is not None:
        net_cfg = network_config(cfg)
        if not answers_unseen_particles(net_cfg.model) and query.n_particles != result.model.n_particles:
            raise ValueError(f"{cfg.model}: {query.n_particles} particles asked, fitted on {result.model.n_particles}")
        out += predict(result.model, make_inputs(net_cfg, query), device) * result.std + result.mean
    return out

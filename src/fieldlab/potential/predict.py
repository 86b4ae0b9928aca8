"""A trained operator on the user's own sample files: the potential in volts and an error estimate for each.

Every input is validated before anything runs (schema and the solver's physics checks,
:func:`~fieldlab.potential.physics.corpus.validate_raw_file`, then the loss mask the estimate is measured on), and
every prediction and estimate is computed before the first file is written, so a bad input leaves the output
folder as it was. Each output ``<out>/<name>.npz`` (written atomically) holds:

================== =========== ===========================================================================
key                shape       meaning
================== =========== ===========================================================================
phi                (D, H, W)   predicted potential in volts (the model's output times the checkpoint's
                               ``u_scale``, exactly the forward pass of the evaluation), float32
rel_l2_estimate    ()          estimated ``||phi - u||_mask / ||u||_mask`` against the sample's own FEM
                               potential (:func:`~fieldlab.potential.estimate.estimate_error`)
error_estimate     (D, H, W)   the estimated error field ``phi - u`` in volts (corpus gauge), zero in air
loss_mask          (D, H, W)   the voxels of the norm (the evaluation's loss mask), bool
predict_seconds    ()          forward pass, s
estimate_seconds   ()          error estimate, s
phi_refined        (D, H, W)   the hybrid's potential: ``phi`` after ``eval.refine_sweeps`` symmetric
                               Gauss-Seidel sweeps of the sample's own FEM system
                               (:func:`~fieldlab.potential.refine.smooth_potential`), float32; only when
                               ``eval.refine_sweeps > 0``
refine_seconds     ()          assembly and sweeps, s (with ``phi_refined``)
================== =========== ===========================================================================

The sample format is the corpus's (:mod:`fieldlab.potential.schema`), at any resolution; its ``u`` is not read by
the model or the estimate (a placeholder of zeros will do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldlab.config import Config
from fieldlab.core.device import select_device
from fieldlab.core.io import save_npz
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, dataset_options
from fieldlab.potential.estimate import estimate_error
from fieldlab.potential.evaluate import checkpoint_model_config, evaluation_inputs, load_trained
from fieldlab.potential.physics.corpus import validate_raw_file
from fieldlab.potential.refine import smooth_potential
from fieldlab.potential.schema import PotentialSample


@dataclass(frozen=True)
class Prediction:
    """One sample's output (see the module table) and where it goes."""

    source: Path
    out: Path
    arrays: dict[str, np.ndarray]

    @property
    def line(self) -> str:
        """The one line printed for this sample."""
        a = self.arrays
        return (
            f"{self.source}: rel_l2_estimate {float(a['rel_l2_estimate']):.4f}  "
            f"predict {float(a['predict_seconds']):.3f} s  estimate {float(a['estimate_seconds']):.3f} s  -> {self.out}"
        )


def validate_inputs(files: list[Path], out_dir: Path) -> list[PotentialSample]:
    """Every file read and checked (one :class:`InputError` naming the first bad file); outputs may not collide."""
    if not files:
        raise InputError("no sample files given; expected one or more .npz samples")
    names: dict[str, Path] = {}
    for f in files:
        if f.stem in names:
            raise InputError(f"{f}: same name as {names[f.stem]}; outputs would collide in {out_dir}/{f.stem}.npz")
        names[f.stem] = f
        if (out_dir / f"{f.stem}.npz").resolve() == f.resolve():
            raise InputError(f"{f}: the output {out_dir / f.name} would overwrite this input; choose another --out")
    return [validate_raw_file(f) for f in files]


@torch.no_grad()
def predict_files(
    cfg: Config,
    checkpoint: str | Path,
    files: list[str | Path],
    out_dir: str | Path,
    device: str | None = None,
    model_factory=None,
) -> list[Prediction]:
    """Predict and estimate every file of ``files``, then write ``out_dir/<stem>.npz`` for each (module notes).

    ``cfg`` supplies what the evaluation takes from ``params.yaml`` (``data.coord_range`` and the ``loss`` mask
    settings); the model, its prior and its scalings come from the checkpoint (:func:`load_trained`).
    """
    paths, out = [Path(f) for f in files], Path(out_dir)
    samples = validate_inputs(paths, out)
    dev = select_device(device or cfg.device)
    model, ckpt = load_trained(checkpoint, dev, model_factory)
    scaler, ref, _grid = evaluation_inputs(ckpt, checkpoint)
    prior = checkpoint_model_config(ckpt, checkpoint).prior
    dataset = PotentialDataset(paths, **dataset_options(cfg, scaler, ref, prior), cache=False)
    items = [dataset.build_item(s, where=str(p)) for s, p in zip(samples, paths, strict=True)]  # mask checks
    results = [
        Prediction(p, out / f"{p.stem}.npz", _predict_one(model, item, sample, scaler, dev, cfg.eval.refine_sweeps))
        for p, item, sample in zip(paths, items, samples, strict=True)
    ]
    for r in results:
        save_npz(r.out, **r.arrays)
    return results


def _predict_one(
    model, item: dict[str, torch.Tensor], sample: PotentialSample, scaler, device, sweeps: int = 0
) -> dict[str, Any]:
    """The forward pass of the evaluation (same inputs, same call), de-scaled to volts, its error estimate and,
    with ``sweeps > 0``, the hybrid's refined potential."""
    batch = {k: v[None].to(device) for k, v in item.items()}  # add the batch axis
    t0 = time.perf_counter()
    pred = model(batch["sigma"], batch["f"], batch["coords"], batch["spacing"], prior=batch.get("prior"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    predict_s = time.perf_counter() - t0
    phi = scaler.unscale_potential(pred.float())[0, 0].cpu().numpy()  # (1, 1, D, H, W) -> (D, H, W), volts
    mask = item["mask"][0].numpy()
    spacing = tuple(float(s) for s in sample.spacing)
    sigma, source = sample.sigma.astype(np.float64), sample.source.astype(np.float64)
    est = estimate_error(phi.astype(np.float64), sigma, source, spacing, mask)  # type: ignore[arg-type]
    out = {
        "phi": phi.astype(np.float32),
        "rel_l2_estimate": np.float64(est.rel_l2),
        "error_estimate": est.error.astype(np.float32),
        "loss_mask": mask.astype(bool),
        "predict_seconds": np.float64(predict_s),
        "estimate_seconds": np.float64(est.seconds),
    }
    if sweeps > 0:
        t0 = time.perf_counter()
        refined = smooth_potential(phi.astype(np.float64), sigma, source, spacing, sweeps)  # type: ignore[arg-type]
        out.update(phi_refined=refined.astype(np.float32), refine_seconds=np.float64(time.perf_counter() - t0))
    return out

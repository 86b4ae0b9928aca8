"""Training checkpoints: atomic, and loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled classes), so it loads with
PyTorch's safe unpickler:

- ``model``: state dict; ``model_config``: the ``model`` section as a plain dict; ``backbone``;
- ``transforms``: :meth:`fieldlab.potential.models.scaling.FieldScaler.to_dict`;
- ``optimizer``, ``scheduler``: state dicts; ``epoch`` (completed epochs), ``step``;
- ``rng``: Python, NumPy and torch (CPU, CUDA) generator states, converted to tensors and lists;
- ``best_val_rel_l2``, ``history``, ``train_time_s`` and the resolved ``config``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldlab.core.io import atomic_open
from fieldlab.errors import InputError


def rng_state() -> dict[str, Any]:
    """Every generator state of this process, as tensors and plain lists."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 -- the legacy global RNG, seeded by seed_everything
    out: dict[str, Any] = {
        "python": [int(version), list(state), gauss],
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, py_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in py_state), gauss))
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` with :func:`torch.save` to a temporary sibling, then rename it over ``path``."""
    with atomic_open(path, "wb") as fh:
        torch.save(checkpoint, fh)


#: Keys of every checkpoint and the type each must have.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "model_config": dict,
    "backbone": str,
    "transforms": dict,
    "epoch": int,
}
#: Further keys a checkpoint needs to continue training from it (``--resume``).
RESUME_KEYS = ("optimizer", "scheduler", "step", "best_val_rel_l2", "history", "train_time_s", "rng")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with the safe unpickler; a missing, foreign or incomplete file is an :class:`InputError`.

    Checked: the file loads, holds a dict, has every key of :data:`REQUIRED` with its type, and every tensor of
    the ``model`` state dict is finite (a NaN weight would turn every prediction into NaN).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (train this backbone first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt or unsafe files
        raise InputError(f"{path}: not a readable fieldlab checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: holds a {type(ckpt).__name__}; expected a fieldlab checkpoint (a dict)")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}")
    for key, kind in REQUIRED.items():
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise InputError(f"{path}: checkpoint {key} is a {type(ckpt[key]).__name__}; expected {expected}")
    for name, value in ckpt["model"].items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: model.{name} is a {type(value).__name__}; expected a tensor")
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            raise InputError(f"{path}: model.{name} holds non-finite weights (NaN or infinity)")
    return ckpt


def resume_checkpoint(out_dir: str | Path) -> Path:
    """The checkpoint ``--resume`` continues from: ``<out_dir>/checkpoints/last.pt`` (written every epoch)."""
    return Path(out_dir) / "checkpoints" / "last.pt"


def check_resume(path: str | Path, backbone: str, model_config: dict[str, Any]) -> None:
    """Fail before training when ``--resume`` has nothing, or the wrong thing, to continue from.

    Parameters
    ----------
    path
        The checkpoint to continue (:func:`resume_checkpoint`).
    backbone
        The backbone this run trains.
    model_config
        The ``model`` section of this run as a plain dict; it must equal the one the checkpoint was trained with
        (the ``backbone`` key aside, which ``--backbone`` may override), or the weights would not fit the model.

    Raises
    ------
    InputError
        The checkpoint is missing, unreadable, lacks a key of :data:`RESUME_KEYS`, belongs to another backbone,
        or was trained with another ``model`` section (the first differing key is named).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: no checkpoint to resume from; expected the last.pt of an earlier run of {backbone} "
            "(drop --resume to start afresh)"
        )
    ckpt = load_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}; cannot resume training from it")
    if ckpt["backbone"] != backbone:
        raise InputError(f"{path}: checkpoint of backbone {ckpt['backbone']!r}; expected {backbone!r} to resume")
    trained = _flatten({k: v for k, v in ckpt["model_config"].items() if k != "backbone"})
    current = _flatten({k: v for k, v in model_config.items() if k != "backbone"})
    for key in sorted(set(trained) | set(current)):
        old, new = trained.get(key), current.get(key)
        if old != new:
            raise InputError(
                f"{path}: trained with model.{key} = {old!r}, the params give {new!r}; expected the same model "
                "section to resume (or drop --resume to start afresh)"
            )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become tuples (a checkpoint may store either)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list | tuple) else value
    return out

"""Training checkpoints: atomic, and loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled classes), so it loads with
PyTorch's safe unpickler:

- ``model``: state dict; ``model_config``: the ``model`` section as a plain dict; ``backbone``;
- ``transforms``: :meth:`fieldlab.potential.data.transforms.FieldScaler.to_dict`;
- ``optimizer``, ``scheduler``: state dicts; ``epoch`` (completed epochs), ``step``;
- ``rng``: Python, NumPy and torch (CPU, CUDA) generator states, converted to tensors and lists;
- ``best_val``, ``history`` and the resolved ``config``.
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with the safe unpickler; a missing or foreign file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (train this backbone first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt or unsafe files
        raise InputError(f"{path}: not a readable fieldlab checkpoint ({exc.__class__.__name__})") from None
    missing = [k for k in ("model", "model_config", "backbone", "transforms", "epoch") if k not in ckpt]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return ckpt

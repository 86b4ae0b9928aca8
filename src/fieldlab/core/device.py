"""Device selection: ``device: auto`` picks cuda > mps > cpu; an explicit device that is absent is an error."""

from __future__ import annotations

import torch

from fieldlab.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """Resolve a device name from ``params.yaml: device``.

    ``auto`` returns ``cuda`` when available, else ``mps``, else ``cpu``. ``cpu``, ``cuda``, ``cuda:N`` and
    ``mps`` are honoured as given, and raise :class:`ConfigError` when that device is not present.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device = {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device = {name!r}: CUDA is not available on this machine (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device = {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ConfigError(f"device = {name!r}: MPS is not available on this machine (use auto or cpu)")
    elif device.type != "cpu":
        raise ConfigError(f"device = {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


#: Inference precisions a config may name (``subgrid.precision``).
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 natively: a CUDA device that supports it, or a CPU with bfloat16 instructions
    (AVX512-BF16 / AMX, as oneDNN reports them); elsewhere bfloat16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``: ``None`` (float32) for ``float32`` and for ``auto`` where
    bfloat16 is not native (:func:`native_bf16`), ``torch.bfloat16`` otherwise.

    Examples
    --------
    >>> autocast_dtype("float32", "cpu") is None, autocast_dtype("bfloat16", "cpu")
    (True, torch.bfloat16)
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision = {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "float32" or (precision == "auto" and not native_bf16(device)):
        return None
    return torch.bfloat16

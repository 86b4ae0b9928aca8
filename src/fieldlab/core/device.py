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

"""Warp start-up: a project-local kernel cache, quiet initialisation and device selection (nothing at import)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from fieldlab.errors import ConfigError

#: environment variable that overrides the kernel cache directory (default: ``./.warp_cache``)
CACHE_ENV = "FIELDLAB_WARP_CACHE"


def warp_cache_dir() -> Path:
    """Directory of Warp's compiled kernels: ``$FIELDLAB_WARP_CACHE`` or ``.warp_cache`` under the working dir."""
    return Path(os.environ.get(CACHE_ENV, Path.cwd() / ".warp_cache")).resolve()


def init_warp() -> ModuleType:
    """Import and initialise Warp once, with its kernel cache in :func:`warp_cache_dir`; return the module."""
    import warp as wp
    from warp._src import context  # Warp keeps its runtime there; None until wp.init()

    if getattr(context, "runtime", None) is None:
        wp.config.kernel_cache_dir = str(warp_cache_dir())
        wp.config.log_level = wp.LOG_WARNING  # no banner or per-module load lines
        wp.init()
    return wp


def resolve_device(name: str) -> str:
    """Warp device for ``mpm.device``: ``auto`` -> ``cuda`` when present, else ``cpu``; absent devices are errors."""
    wp = init_warp()
    cuda = wp.is_cuda_available()
    if name == "auto":
        return "cuda" if cuda else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not cuda:
            raise ConfigError(f"mpm.device = {name!r}: Warp finds no CUDA device here (use cpu or auto)")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= wp.get_cuda_device_count()):
            raise ConfigError(f"mpm.device = {name!r}: expected cuda:N with N < {wp.get_cuda_device_count()}")
        return name
    raise ConfigError(f"mpm.device = {name!r}: expected cpu, cuda, cuda:N or auto")


def cpu_threads(requested: int) -> int:
    """Number of CPU threads: ``requested``, or every core this process may use when 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

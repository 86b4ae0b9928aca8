"""Seeding of every random number generator a run touches (Python, NumPy, torch, DataLoader workers)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed ``random``, NumPy and torch (CPU and CUDA) and return a torch generator seeded with ``seed``.

    Parameters
    ----------
    seed
        Non-negative integer, usually ``params.yaml: seed``.
    deterministic
        Also ask cuDNN and torch for deterministic kernels (slower; some ops then warn).

    Notes
    -----
    String hashing (``PYTHONHASHSEED``) is fixed when the interpreter starts, so no call made afterwards can seed
    it; this function leaves the environment alone. Export ``PYTHONHASHSEED`` before starting Python when the
    iteration order of sets of strings must repeat across processes.
    """
    if seed < 0:
        raise ValueError(f"seed = {seed}: expected a non-negative integer")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- seeds the legacy global RNG that libraries still use
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy and ``random`` seeds from the worker's torch seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)  # noqa: NPY002
    random.seed(worker_seed)


def numpy_rng(seed: int, *stream: int) -> np.random.Generator:
    """Independent NumPy generator for ``(seed, *stream)``, e.g. one per sample index, stable across processes."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))

"""File I/O: atomic output (write to a temporary sibling, then rename) and the one safe ``.npz`` reader.

No reader sees a half-written file, and a truncated, empty or foreign ``.npz`` becomes one
:class:`~fieldlab.errors.InputError` naming the file, never a ``zipfile`` or ``zlib`` traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from fieldlab.errors import InputError

#: What a damaged ``.npz`` raises somewhere inside ``np.load`` or when an array is decompressed: a truncated or
#: foreign archive (BadZipFile, OSError, EOFError), a bad header, a pickled object array or a short member
#: (ValueError), a corrupt deflate stream (zlib.error).
NPZ_READ_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling folder; on success it replaces ``path`` (and all in it), on error it goes.

    A reader sees either the previous folder or the complete new one, never a half-filled one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the usual permissions
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")


def save_npz(path: str | Path, compressed: bool = True, **arrays: np.ndarray) -> None:
    """Write a (compressed) ``.npz`` atomically."""
    with atomic_open(path, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def load_npz(
    path: str | Path, keys: Iterable[str] | None = None, what: str = "an .npz archive"
) -> dict[str, np.ndarray]:
    """Read every array (or only ``keys``, all required) of an ``.npz`` archive into memory.

    Parameters
    ----------
    path
        The archive.
    keys
        Arrays to read; each must be present. ``None`` reads every array in the file.
    what
        What the file should be, for the messages (``"an MPM trajectory"``, ``"a potential sample"``).

    Returns
    -------
    dict
        Name -> array, fully read (a damaged member fails here, not later).

    Raises
    ------
    InputError
        One line naming ``path``: the file is missing, is not an ``.npz`` archive (truncated, empty, a bare
        ``.npy``, another format), holds a pickled object array, or misses one of ``keys``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> save_npz(p, u=np.zeros(3))
    >>> load_npz(p, ["u"])["u"].shape
    (3,)
    >>> _ = p.write_bytes(p.read_bytes()[:40])  # truncated
    >>> load_npz(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fieldlab.errors.InputError: ...a.npz: not a readable .npz archive (BadZipFile: File is not a zip file); ...
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found; expected {what}")
    wanted = None if keys is None else list(keys)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: holds a single .npy array; expected {what} (an .npz archive of named arrays)")
        with loaded as npz:
            names = list(npz.files)
            missing = [k for k in wanted if k not in names] if wanted is not None else []
            if missing:
                raise InputError(
                    f"{path}: missing array(s) {', '.join(missing)}; expected {what} with {', '.join(wanted)} "
                    f"(found {', '.join(names) or 'none'})"
                )
            return {k: npz[k] for k in (names if wanted is None else wanted)}
    except InputError:
        raise
    except NPZ_READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        detail = f"{exc.__class__.__name__}: {reason}" if reason else exc.__class__.__name__
        raise InputError(f"{path}: not a readable .npz archive ({detail}); expected {what}") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

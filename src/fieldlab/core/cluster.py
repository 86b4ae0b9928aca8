"""Where a run's parallel work runs: this process, a local Dask cluster, an existing scheduler or a batch queue.

One setting (``params.yaml: cluster.address``) says where; :func:`open_client` turns it into a Dask ``Client`` (or
``None`` for this process) and :func:`map_tasks` runs one function over many items there, results in input order:

=================== =================================================================================
``""``              in this process, one item after another (no Dask)
``"local"``         a ``distributed.LocalCluster`` of ``cluster.workers`` processes on this machine
``"tcp://host:p"``  an existing scheduler (``dask scheduler``, then ``dask worker tcp://host:p`` anywhere)
``"slurm"`` ...     ``dask_jobqueue.SLURMCluster`` (``"pbs"``: PBSCluster, ``"lsf"``: LSFCluster) scaled to
                    ``cluster.workers`` jobs from the ``cluster.jobqueue`` settings
=================== =================================================================================

Where work runs changes no output: every task derives its randomness from its item (a limb's seed, never a
worker's), runs with one BLAS thread (:func:`fieldlab.core.threads.blas_threads`) so its floating point is the same
wherever it runs, and writes its files atomically. A worker lost mid-task (killed, its node gone) costs that task a
rerun on another worker (Dask's scheduler reschedules it); its temporary file is removed by the caller
(:func:`remove_partial`), so nothing half-written stays on disk.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from logging import ERROR
from pathlib import Path
from typing import Any

from fieldlab.errors import ConfigError, FieldlabError

#: Batch-queue names of ``cluster.address`` -> the ``dask_jobqueue`` class that submits the workers.
JOBQUEUES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
#: Scheduler address schemes accepted for an existing cluster.
SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")


def check_address(address: str) -> str:
    """``address`` if it is one ``cluster.address`` understands, else a :class:`ConfigError` naming the key.

    Examples
    --------
    >>> check_address("local"), check_address("tcp://10.0.0.5:8786")
    ('local', 'tcp://10.0.0.5:8786')
    >>> check_address("localhost")
    Traceback (most recent call last):
    ...
    fieldlab.errors.ConfigError: params: cluster.address = 'localhost': expected "" (this process), "local", \
"slurm", "pbs", "lsf" or a scheduler address such as tcp://host:8786
    """
    if address in ("", "local") or address in JOBQUEUES or address.startswith(SCHEMES):
        return address
    queues = ", ".join(f'"{name}"' for name in JOBQUEUES)
    raise ConfigError(
        f'params: cluster.address = {address!r}: expected "" (this process), "local", {queues} '
        "or a scheduler address such as tcp://host:8786"
    )


@contextlib.contextmanager
def open_client(settings: Any) -> Iterator[Any]:
    """The Dask ``Client`` of ``settings`` (``params.yaml: cluster``, :class:`fieldlab.config.ClusterConfig`: its
    ``address``, ``workers``, ``threads_per_worker``, ``timeout_s`` and ``jobqueue``) for the block; ``None`` for this
    process. A cluster it started is closed at the end of the block.

    Raises
    ------
    ConfigError
        An address no scheduler answers at within ``timeout_s``, ``workers < 1``, or a batch queue without
        ``dask-jobqueue`` installed: one line naming the key.
    """
    address, workers, timeout_s = settings.address, int(settings.workers), float(settings.timeout_s)
    check_address(address)
    if workers < 1:
        raise ConfigError(f"params: cluster.workers = {workers}: expected at least 1 worker")
    if address == "":
        yield None
        return
    from distributed import Client, LocalCluster

    if address.startswith(SCHEMES):
        try:
            client = Client(address, timeout=f"{timeout_s}s")
        except OSError as exc:
            raise ConfigError(
                f"params: cluster.address = {address!r}: no Dask scheduler answered within {timeout_s:g} s "
                f'({exc.__class__.__name__}); start one with `dask scheduler` or set cluster.address to "local"'
            ) from None
        with client:
            yield client
        return
    if address == "local":
        cluster = LocalCluster(  # the workers' warnings (a cancelled task, a restarted worker) stay off stderr
            n_workers=workers,
            threads_per_worker=int(settings.threads_per_worker),
            processes=True,
            dashboard_address=":0",  # any free port: a second cluster on the machine is no conflict
            silence_logs=ERROR,
        )
    else:
        jobqueue = settings.jobqueue
        options = jobqueue if isinstance(jobqueue, Mapping) else vars(jobqueue)
        cluster = _jobqueue_cluster(address, dict(options))
    with cluster, Client(cluster) as client:
        if address != "local":
            cluster.scale(jobs=workers)
        yield client


def _jobqueue_cluster(address: str, settings: dict[str, Any]) -> Any:
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(
            f"params: cluster.address = {address!r} needs dask-jobqueue, which is not installed "
            "(pip install 'fieldlab[cluster]')"
        ) from None
    settings = {k: v for k, v in settings.items() if v not in ("", None)}
    return getattr(dask_jobqueue, JOBQUEUES[address])(**settings)


def _task(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """``(True, fn(item))`` with one BLAS thread: the same floating point on any worker (module notes).

    A :class:`~fieldlab.errors.FieldlabError` (bad input, a physics check) comes back as ``(False, error)``: the
    caller raises it as its one ``error:`` line, and the worker does not log it as a crashed task.
    """
    from fieldlab.core.threads import blas_threads

    try:
        with blas_threads():
            return True, fn(item)
    except FieldlabError as exc:
        return False, exc


def _value(result: tuple[bool, Any]) -> Any:
    ok, value = result
    if not ok:
        raise value
    return value


def map_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    client: Any = None,
    progress: bool = False,
    desc: str = "",
    consume: Callable[[Any], Any] | None = None,
) -> list[Any]:
    """``[fn(x) for x in items]`` on ``client`` (``None``: in this process), in the order of ``items``.

    ``fn`` must be importable by the workers (a module-level function) and each item picklable. With ``consume``,
    each value is handed to ``consume`` here, in the caller's process, as soon as it arrives (e.g. to write it), and
    what ``consume`` returns is kept instead: a value is never held longer than needed, and nothing is written by a
    task the caller has given up on. An exception in a task is raised here (the tasks not yet run are cancelled); a
    task whose worker died is rerun by the scheduler.
    """
    from tqdm import tqdm

    keep = consume if consume is not None else (lambda value: value)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="task")
    try:
        if client is None:
            out = []
            for item in items:
                out.append(keep(_value(_task(fn, item))))
                bar.update()
            return out
        from distributed import as_completed

        futures = client.map(functools.partial(_task, fn), list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for future in as_completed(futures):
                results[index[future.key]] = keep(_value(future.result()))
                future.release()
                bar.update()
        except BaseException:
            client.cancel(futures)
            raise
        return results
    finally:
        bar.close()


def remove_partial(folders: Sequence[Path]) -> list[Path]:
    """Remove the temporary files (``.<name>.*.tmp``, :func:`fieldlab.core.io.atomic_open`) a killed task left in
    ``folders``; return them."""
    stale = [p for folder in folders if folder.is_dir() for p in folder.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale

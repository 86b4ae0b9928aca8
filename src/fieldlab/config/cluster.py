"""Schema of the ``cluster`` section: where parallel work runs (no stage's DVC param: it changes no output)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fieldlab.config.core import spec
from fieldlab.core.cluster import check_address


@dataclass(frozen=True)
class JobqueueConfig:
    """One batch job of workers (``dask_jobqueue``'s cluster arguments; an empty string is left to its default)."""

    cores: int = spec(1, ge=1, doc="cores per job")
    processes: int = spec(1, ge=1, doc="worker processes per job")
    memory: str = spec("4GiB", doc="memory per job")
    walltime: str = spec("01:00:00", doc="walltime per job")
    queue: str = spec("", doc="partition / queue")
    account: str = spec("", doc="account / project to charge")
    local_directory: str = spec("", doc="scratch folder of the workers on a node")


@dataclass(frozen=True)
class ClusterConfig:
    """Where ``prepare``, ``priors`` and the exploration's fits run (:mod:`fieldlab.core.cluster`)."""

    address: str = spec(
        "local", doc='"" this process, "local" a LocalCluster, tcp://host:port a scheduler, "slurm"/"pbs"/"lsf"'
    )
    workers: int = spec(2, ge=1, doc="local worker processes, or batch jobs for slurm/pbs/lsf")
    threads_per_worker: int = spec(1, ge=1)
    timeout_s: float = spec(10.0, gt=0, doc="seconds to wait for a scheduler at cluster.address")
    jobqueue: JobqueueConfig = field(default_factory=JobqueueConfig)

    def __post_init__(self) -> None:
        check_address(self.address)

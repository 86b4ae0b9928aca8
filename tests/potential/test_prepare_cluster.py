"""The corpus on a Dask cluster: the same bytes in this process, on a LocalCluster of two workers, on a scheduler
started with ``dask scheduler`` and two ``dask worker`` processes, and after a worker is killed mid-run.

The truth here is the in-process corpus: every ``.npz`` must hash the same wherever its limb was solved (the seed
comes from the limb, every task runs with one BLAS thread), and a worker killed with SIGKILL while it solves costs a
rerun of its task, never a missing, partial or different file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fieldlab.config import ClusterConfig, DataConfig, PhantomConfig, PhysicsConfig, SourceConfig
from fieldlab.core.cluster import map_tasks, open_client
from fieldlab.errors import ConfigError, InputError
from fieldlab.potential.physics.corpus import generate_corpus

ROOT = Path(__file__).resolve().parents[2]
PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.005, separation_m=(0.03, 0.04), margin_m=0.011),
)
#: Seven base limbs, one ood, the test limb also at 2x (the longest task, started first).
DATA = DataConfig(grid=(24, 12, 12), n_train=3, n_val=2, n_test=1, n_ood=1, n_train_2x=1, n_val_2x=0)
LOCAL = ClusterConfig(address="local", workers=2)


def digests(root: Path) -> dict[str, str]:
    """sha256 of every sample file under ``root``, by path; also fails on any file left besides them."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert all(p.suffix == ".npz" and not p.name.startswith(".") for p in files), f"stray files: {files}"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


#: The in-process corpus, made in a fresh interpreter as the ``prepare`` stage makes it: the test process may have
#: imported a library that switches the FPU to flush denormals to zero (taichi's init does, for the MPM cross-check),
#: which moves the solver's last bits.
IN_PROCESS = """
import json, sys
sys.path.insert(0, {here!r})
from test_prepare_cluster import DATA, PHYSICS
from fieldlab.potential.physics.corpus import generate_corpus
manifest = generate_corpus(DATA, PHYSICS, seed=3, root={root!r}, progress=False)
print(json.dumps(manifest["summary"]["workers"]))
"""


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("in_process")
    code = IN_PROCESS.format(here=str(Path(__file__).parent), root=str(root))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 1  # one worker: this process
    manifest = json.loads((root / "manifest.json").read_text())
    found = digests(root)
    assert len(found) == 3 + 2 + 1 + 1 + 1 + 1  # train, val, test, ood, test_2x, train_2x
    assert {r["file"]: r["sha256"] for r in manifest["samples"]} == found
    return found


def test_a_local_cluster_of_two_workers_writes_the_same_bytes(in_process, tmp_path):
    with open_client(LOCAL) as client:
        manifest = generate_corpus(DATA, PHYSICS, seed=3, root=tmp_path, progress=False, client=client)
    assert manifest["summary"]["workers"] == 2
    assert digests(tmp_path) == in_process


@dataclass
class Daemons:
    """``dask scheduler`` and ``dask worker`` processes started as a user would, stopped at the end."""

    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, *args: str, env: dict[str, str]) -> None:
        cmd = [str(Path(sys.executable).parent / "dask"), *args]
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_scheduler_and_workers_started_by_hand_write_the_same_bytes(in_process, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    file = tmp_path / "scheduler.json"
    daemons = Daemons()
    try:
        daemons.start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                      "--scheduler-file", str(file), env=env)  # fmt: skip
        deadline = time.monotonic() + 60
        while not file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            daemons.start("worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard", env=env)
        with open_client(ClusterConfig(address=address, workers=2)) as client:
            client.wait_for_workers(2, timeout=60)
            generate_corpus(DATA, PHYSICS, seed=3, root=tmp_path / "corpus", progress=False, client=client)
    finally:
        daemons.stop()
    assert digests(tmp_path / "corpus") == in_process


def test_a_worker_killed_mid_run_costs_a_retry_not_a_file(in_process, tmp_path):
    """SIGKILL one worker while it holds a task: its nanny restarts it, the scheduler reruns the task, the corpus is
    complete and byte-identical, and the killed task's temporary file does not stay on disk."""
    with open_client(LOCAL) as client:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)  # worker address -> pid
        done: dict[str, object] = {}

        def run() -> None:
            try:
                done["manifest"] = generate_corpus(DATA, PHYSICS, seed=3, root=tmp_path, progress=False, client=client)
            except BaseException as exc:  # re-raised below, in the test's thread
                done["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and time.monotonic() < deadline and thread.is_alive():
            busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
            if busy:
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.01)
        thread.join(timeout=300)
    assert "error" not in done, done.get("error")
    assert killed is not None, "no worker was ever seen holding a task"
    assert digests(tmp_path) == in_process


def _fails_on_two(x: int) -> int:
    if x == 2:
        raise InputError(f"item {x}: refused")
    return x * x


def test_map_tasks_keeps_the_order_and_raises_a_task_s_error():
    items = list(range(6))
    assert map_tasks(abs, [-i for i in items]) == items
    with open_client(LOCAL) as client:
        assert map_tasks(abs, [-i for i in items], client) == items
        with pytest.raises(InputError, match="item 2: refused"):
            map_tasks(_fails_on_two, items, client)
    with pytest.raises(InputError, match="item 2: refused"):
        map_tasks(_fails_on_two, items)


def test_where_work_runs_is_checked_with_one_line_naming_the_key(monkeypatch):
    unreachable = ClusterConfig(address="tcp://127.0.0.1:9", timeout_s=1.0)
    with (
        pytest.raises(ConfigError, match=r"cluster.address = 'tcp://127.0.0.1:9': no Dask scheduler answered"),
        open_client(unreachable),
    ):
        pass
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if dask-jobqueue were not installed
    with (
        pytest.raises(ConfigError, match=r"cluster.address = 'slurm' needs dask-jobqueue"),
        open_client(ClusterConfig(address="slurm")),
    ):
        pass
    with pytest.raises(ConfigError, match=r"cluster.address = 'laptop': expected"):
        ClusterConfig(address="laptop")


@pytest.mark.parametrize(("override", "key"), [("cluster.workers=0", "cluster.workers"),
                                               ("cluster.address=laptop", "cluster.address")])  # fmt: skip
def test_a_bad_cluster_setting_is_one_error_line(override, key):
    proc = subprocess.run(
        [sys.executable, "-m", "fieldlab", "config", "--params", str(ROOT / "params.yaml"), override],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and key in proc.stderr


def test_where_work_runs_is_no_stage_s_dvc_param():
    """Switching cluster.* leaves `dvc status` clean: no stage of dvc.yaml lists the section or a key of it."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listed = {
        key if isinstance(key, str) else next(iter(key)) for stage in stages.values() for key in stage.get("params", [])
    }
    assert listed and not any(k == "cluster" or k.startswith("cluster.") for k in listed)


def test_a_local_cluster_says_nothing_when_the_dashboard_port_is_taken(capfd):
    """Another cluster on the machine holds Dask's default dashboard port (8787): a stage's LocalCluster takes any
    free port and writes nothing to stderr (a stage's bad input must stay one error line)."""
    import socket

    held = socket.socket()
    try:
        held.bind(("", 8787))
        held.listen()
    except OSError:
        pass  # already taken by something else: the condition holds
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_client(LOCAL) as client:
                assert map_tasks(abs, [-1, -2], client) == [1, 2]
    finally:
        held.close()
    assert [str(w.message) for w in caught] == []  # a stage would print each on stderr
    assert capfd.readouterr().err == ""

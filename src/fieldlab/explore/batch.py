"""A round of fits run at once on this machine: DVC's experiment queue, or k stage processes in workspace copies.

``explore.parallel = k`` makes the driver propose k configurations per round (:mod:`fieldlab.explore.agents`) and
hand them to a runner's ``run_many``, which returns their results in the order given:

:class:`QueueRunner` (the default)
    each fit is queued with ``dvc exp run --queue -n NAME -S ... STAGE`` (params.yaml written first, as
    :class:`~fieldlab.explore.runners.DvcRunner` does), then ``dvc queue start --jobs k`` runs them, each in its
    own copy under ``.dvc/tmp/exps``; the runner waits until every one has succeeded or failed and reads the
    metrics from ``dvc exp show --json``. Every fit stays a git-linked experiment that ``dvc exp show`` lists with
    its params and metrics. DVC 3 has no ``dvc queue wait``, so the runner looks: every :data:`REF_POLL_S` s at
    the experiment refs (``git for-each-ref refs/exps``: a succeeded experiment has its ref; a look costs
    milliseconds, where ``dvc exp show`` costs about a CPU second, taken from the fits), and at the queue's states
    in ``dvc exp show --json`` when all refs are there or every tenth of the time waited so far (within
    [:data:`MIN_SHOW_S`, :data:`MAX_SHOW_S`] s; a failed experiment has no ref). A look at ``dvc exp show`` that
    gives no answer within :data:`SHOW_TIMEOUT_S` s (seen once while the queue's workers were starting) is
    stopped and repeated.
:class:`PoolRunner` (``--no-dvc``)
    the k stage processes start at once, each in its own copy of the workspace (:func:`workspace_copy`: the
    inputs linked, the stage's declared outputs private), and the runner waits for all of them. The copies are
    removed afterwards; the metrics live on in the journal.

Where a fit runs changes no result: it reads the same params file and the same inputs, and its seed comes from
its params, never from its slot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from fieldlab.explore.runners import (
    DvcRunner,
    Job,
    RunResult,
    SubprocessRunner,
    die_with_parent,
    dvc_env,
    params_text,
    set_args,
    tail,
)

#: seconds between two looks at the experiment refs
REF_POLL_S = 1.0
#: bounds of the interval between two looks at ``dvc exp show --json`` (seconds), and how long one may take
MIN_SHOW_S, MAX_SHOW_S, SHOW_TIMEOUT_S = 5.0, 30.0, 60.0
#: executor states of ``dvc exp show --json`` of a queued experiment not finished yet
ACTIVE = ("queued", "running")
#: failed looks at ``dvc exp show --json`` in a row after which the wait ends (the results then read "not found")
MAX_SHOW_FAILURES = 5


def exp_states(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Experiment name -> executor state (``queued``, ``running``, ``success``, ``failed``) in ``dvc exp show --json``.

    An experiment listed without an executor (run in the workspace, or its queue record cleared) has succeeded.

    Examples
    --------
    >>> rows = [{"experiments": [{"name": "a", "executor": {"state": "running"}, "revs": [{"name": "a"}]},
    ...                          {"name": "b", "executor": None, "revs": [{"name": "b"}]}]}]
    >>> exp_states(rows)
    {'a': 'running', 'b': 'success'}
    """
    states: dict[str, str] = {}
    for row in rows:
        for exp in row.get("experiments") or []:
            executor = exp.get("executor") or {}
            names = {exp.get("name")} | {rev.get("name") for rev in exp.get("revs") or []}
            for name in names - {None}:
                states[name] = str(executor.get("state") or "success")
    return states


class QueueRunner(DvcRunner):
    """k experiments at once through DVC's queue (module notes); ``run`` (one fit) is :class:`DvcRunner`'s."""

    def __init__(self, repo: str | Path, stage: str, metrics_file: str, baseline_text: str, jobs: int) -> None:
        super().__init__(repo, stage, metrics_file, baseline_text)
        self.jobs = jobs

    def _dvc(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.dvc, *args], cwd=self.repo, capture_output=True, text=True, check=False, env=dvc_env()
        )

    def queue(self, job: Job) -> str:
        """Queue ``job`` as experiment ``job.name``; the error text, or ``""`` when it is queued."""
        (self.repo / "params.yaml").write_text(params_text(self.baseline, job.inr, job.seed))
        sets = set_args(self.baseline, job.inr, job.seed)
        proc = self._dvc("exp", "run", "--queue", "-n", job.name, *sets, self.stage)
        return "" if proc.returncode == 0 else f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}"

    def run_many(self, jobs: list[Job]) -> list[RunResult]:
        """Queue every job, start k queue workers, wait until each has succeeded or failed; results in job order.

        A round of one (a block's root) runs in the workspace (:meth:`DvcRunner.run`): the same experiment without
        the queue's start-up.
        """
        if len(jobs) == 1:
            return [self.run(jobs[0].name, jobs[0].inr, jobs[0].seed)]
        names = [job.name for job in jobs]
        for name in names:
            self._drop_existing(name)
        self._dvc("queue", "remove", *names)  # a failed task of an interrupted round, if any
        errors: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        try:
            for job in jobs:
                errors[job.name] = self.queue(job)
        finally:
            self.reset_params()
        queued = [name for name in names if not errors[name]]
        if queued:
            # the workers it starts are daemons holding its output open: no pipes, or this call would wait for them
            start = [self.dvc, "queue", "start", "--jobs", str(min(self.jobs, len(queued)))]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            subprocess.run(start, cwd=self.repo, check=False, env=dvc_env(), **quiet)
            try:
                rows = self.wait(queued)
            except BaseException:  # Ctrl-C or SIGTERM: stop the round's fits, drop the ones not started, unwind
                self._dvc("queue", "kill", *queued)
                self._dvc("queue", "remove", *queued)
                raise
        results = []
        for name in names:
            if errors[name]:
                results.append(RunResult(None, errors[name], name))
                continue
            result = self.committed_metrics(rows, name)
            if result.metrics is None and exp_states(rows).get(name) == "failed":
                log = self._dvc("queue", "logs", name)
                result = RunResult(None, f"queued experiment failed: {tail(log.stdout or log.stderr)}", name)
            results.append(result)
        return results

    def committed(self, names: list[str]) -> bool:
        """Whether every experiment of ``names`` has its ref (it succeeded)."""
        refs = {ref.rsplit("/", 1)[-1] for ref in self._git("for-each-ref", "--format=%(refname)", "refs/exps").split()}
        return all(name in refs for name in names)

    def wait(self, names: list[str]) -> list[dict[str, Any]]:
        """Wait until no experiment of ``names`` is queued or running (module notes); the last rows of
        ``dvc exp show --json``."""
        start = next_show = time.monotonic()
        failures = 0
        while True:
            now = time.monotonic()
            if now >= next_show or self.committed(names):
                rows, _ = self.exp_show(SHOW_TIMEOUT_S)
                failures = 0 if rows is not None else failures + 1
                if failures >= MAX_SHOW_FAILURES:
                    return []
                states = exp_states(rows or [])
                if rows is not None and not any(states.get(name) in ACTIVE for name in names):
                    return rows
                next_show = now + min(MAX_SHOW_S, max(MIN_SHOW_S, 0.1 * (now - start)))
            time.sleep(REF_POLL_S)


def stage_outputs(workspace: Path, stage: str, metrics_file: str) -> set[str]:
    """The paths a stage writes (``outs``, ``metrics`` and ``plots`` of ``stage`` in ``dvc.yaml``, where there is
    one) and the metrics file, relative to ``workspace``."""
    out = {Path(metrics_file).as_posix()}
    dvc_yaml = workspace / "dvc.yaml"
    spec = (yaml.safe_load(dvc_yaml.read_text()) or {}) if dvc_yaml.is_file() else {}
    entry = (spec.get("stages") or {}).get(stage) or {}
    for key in ("outs", "metrics", "plots"):
        for item in entry.get(key) or []:
            out |= {Path(p).as_posix() for p in (item if isinstance(item, dict) else [item])}
    return out


def workspace_copy(workspace: Path, dest: Path, outputs: set[str]) -> Path:
    """A copy of ``workspace`` at ``dest`` for one fit: every input a symbolic link to the original, every path in
    ``outputs`` absent and the folders above them real, so the fit writes only into its copy.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> ws = pathlib.Path(tempfile.mkdtemp())
    >>> for p in ("data/x.npz", "metrics/inr.json", "metrics/other.json"):
    ...     (ws / p).parent.mkdir(exist_ok=True); _ = (ws / p).write_text("1")
    >>> c = workspace_copy(ws, ws.parent / (ws.name + "-copy"), {"metrics/inr.json"})
    >>> (c / "data").is_symlink(), (c / "metrics").is_symlink(), (c / "metrics/other.json").is_symlink()
    (True, False, True)
    >>> (c / "metrics/inr.json").exists()
    False
    """
    dest.mkdir(parents=True, exist_ok=True)
    above = {Path(p).parents[i].as_posix() for p in outputs for i in range(len(Path(p).parents) - 1)}

    def mirror(rel: Path) -> None:
        for entry in sorted((workspace / rel).iterdir()):
            sub = (rel / entry.name).as_posix()
            if sub in outputs:
                continue
            if sub in above and entry.is_dir() and not entry.is_symlink():
                (dest / sub).mkdir(exist_ok=True)
                mirror(rel / entry.name)
            else:
                (dest / sub).symlink_to(entry)

    mirror(Path("."))
    for folder in above:  # an output folder that does not exist yet
        (dest / folder).mkdir(parents=True, exist_ok=True)
    return dest


class PoolRunner(SubprocessRunner):
    """``--no-dvc`` with ``explore.parallel > 1``: the round's stage processes at once, each in a workspace copy."""

    def __init__(
        self, workspace: str | Path, stage_cmd: str, metrics_file: str, baseline: dict[str, Any], stage: str
    ) -> None:
        super().__init__(workspace, stage_cmd, metrics_file, baseline)
        self.outputs = stage_outputs(self.workspace, stage, metrics_file)

    def run_many(self, jobs: list[Job]) -> list[RunResult]:
        """Start one stage process per job in its own copy, wait for all; results in job order (a round of one: in
        the workspace, as :meth:`SubprocessRunner.run`)."""
        if len(jobs) == 1:
            return [self.run(jobs[0].name, jobs[0].inr, jobs[0].seed)]
        scratch = Path(tempfile.mkdtemp(prefix="fieldlab-fits-"))
        running = []
        try:
            for k, job in enumerate(jobs):
                copy = workspace_copy(self.workspace, scratch / f"fit{k}", self.outputs)
                params_file = self.write_params(job.name, job.inr, job.seed)
                cmd = self.command(params_file)
                logs = [open(scratch / f"fit{k}.{stream}", "w+") for stream in ("out", "err")]  # noqa: SIM115
                proc = subprocess.Popen(cmd, cwd=copy, stdout=logs[0], stderr=logs[1], text=True,
                                        preexec_fn=die_with_parent)  # fmt: skip
                running.append((proc, copy, params_file, cmd, logs))
            results = []
            for proc, copy, _, cmd, logs in running:
                code = proc.wait()
                out, err = (_read(fh) for fh in logs)
                results.append(self.result(code, out, err, copy / self.metrics_file, cmd))
            return results
        finally:
            for proc, _, params_file, _, logs in running:
                if proc.poll() is None:  # interrupted: stop the round's other fits
                    proc.terminate()
                    proc.wait()
                for fh in logs:
                    fh.close()
                os.unlink(params_file)
            shutil.rmtree(scratch, ignore_errors=True)


def _read(fh: Any) -> str:
    fh.seek(0)
    return fh.read()

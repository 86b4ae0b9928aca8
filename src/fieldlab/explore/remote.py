"""A round of fits on a Dask cluster: each task clones the repository, runs ``dvc exp run`` and pushes the experiment.

With ``explore.parallel = k`` and ``cluster.address`` a scheduler (``tcp://host:8786``) or a batch queue
(``slurm``, ``pbs``, ``lsf``), :class:`ClusterRunner` sends the round's k fits as Dask tasks
(:func:`fieldlab.core.cluster.map_tasks`). Each task (:func:`fit_in_clone`), on whatever node runs it:

1. ``git clone`` the driver's ``origin`` into a scratch folder and check out the driver's commit (``HEAD``);
2. write the fit's params.yaml and run ``dvc exp run --pull -n NAME -S ... STAGE`` there (``--pull`` fetches the
   stage's inputs from the DVC remote; the stage runs the package of the clone: ``src`` first on ``PYTHONPATH``);
3. ``dvc exp push -f origin NAME`` (the experiment's git commit, and its cached outputs where a DVC remote is set);
4. remove the scratch folder.

The driver then collects with ``dvc exp pull -f origin NAME ...`` and reads each experiment's metrics from
``dvc exp show --json``, exactly as :class:`~fieldlab.explore.runners.DvcRunner` does: every fit is a git-linked
experiment of the driver's repository. Requirements: the commit is on ``origin`` (``git push`` first; uncommitted
code is not what the cluster runs), every node can reach ``origin`` and the DVC remote, and has ``git`` and this
package's environment (``dvc``; the worker's interpreter folder is put first on ``PATH``). A task whose worker dies
is rerun by Dask's scheduler; the experiment name makes the rerun replace, not duplicate, its result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldlab.errors import ConfigError
from fieldlab.explore.runners import DvcRunner, Job, RunResult, params_text, set_args, tail

#: the git remote the tasks clone from and push to, and the driver pulls from
ORIGIN = "origin"


@dataclass(frozen=True)
class CloneFit:
    """Everything a worker needs for one fit: where to clone, which commit, the experiment and its params."""

    url: str
    commit: str
    name: str
    params: str
    sets: tuple[str, ...]
    stage: str


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def fit_in_clone(fit: CloneFit) -> tuple[int, str]:
    """Clone, run and push one experiment (module notes) on this machine; (exit status, the failing step's output).

    Runs on a Dask worker: the tools come from the worker's own environment.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"fieldlab-{fit.name}-"))
    repo = scratch / "repo"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "DVC_NO_ANALYTICS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo / "src"), os.environ.get("PYTHONPATH", "")) if p)
    dvc = str(Path(bin_dir) / "dvc") if (Path(bin_dir) / "dvc").exists() else "dvc"
    try:
        steps = [
            (["git", "clone", "--quiet", "--no-checkout", fit.url, str(repo)], scratch),
            (["git", "checkout", "--quiet", fit.commit], repo),
        ]
        for cmd, cwd in steps:
            proc = _run(cmd, cwd, env)
            if proc.returncode != 0:
                return proc.returncode, f"{' '.join(cmd[:2])}: {tail(proc.stderr or proc.stdout)}"
        (repo / "params.yaml").write_text(fit.params)
        for cmd in ([dvc, "exp", "run", "--pull", "-n", fit.name, *fit.sets, fit.stage],
                    [dvc, "exp", "push", "-f", ORIGIN, fit.name]):  # fmt: skip
            proc = _run(cmd, repo, env)
            if proc.returncode != 0:
                return proc.returncode, f"dvc {' '.join(cmd[1:3])}: {tail(proc.stderr or proc.stdout)}"
        return 0, ""
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def origin_url(repo: Path) -> str:
    """The URL of ``origin`` as any node can use it (a relative local path made absolute)."""
    proc = subprocess.run(["git", "remote", "get-url", ORIGIN], cwd=repo, capture_output=True, text=True, check=False)
    url = proc.stdout.strip()
    if proc.returncode != 0 or not url:
        raise ConfigError(
            f"{repo}: no git remote {ORIGIN!r}: cluster.address runs each fit in a clone of {ORIGIN} "
            '(git remote add origin URL, then git push), or set cluster.address to "local"'
        )
    local = repo / url
    return str(local.resolve()) if "://" not in url and not Path(url).is_absolute() and local.exists() else url


class ClusterRunner(DvcRunner):
    """The round's fits as Dask tasks on ``client`` (module notes); ``run`` (one fit) is :class:`DvcRunner`'s."""

    def __init__(self, repo: str | Path, stage: str, metrics_file: str, baseline_text: str, client: Any) -> None:
        super().__init__(repo, stage, metrics_file, baseline_text)
        self.client = client
        self.url = origin_url(self.repo)
        self.commit = self._git("rev-parse", "HEAD").strip()
        self.check_pushed()

    def check_pushed(self) -> None:
        """A :class:`ConfigError` unless ``origin`` holds the commit (a clone could not check it out)."""
        heads = {line.split()[0] for line in self._git("ls-remote", self.url).splitlines() if line.strip()}
        known = self._git("branch", "-r", "--contains", self.commit).strip()
        if self.commit not in heads and not known:
            raise ConfigError(
                f"{self.repo}: commit {self.commit[:10]} is not on {ORIGIN} ({self.url}): the cluster's fits clone "
                f"it from there; git push {ORIGIN} first"
            )

    def run_many(self, jobs: list[Job]) -> list[RunResult]:
        """Run every job as a task, pull the pushed experiments, read their metrics; results in job order."""
        from fieldlab.core.cluster import map_tasks

        for job in jobs:
            self._drop_existing(job.name)
        fits = [
            CloneFit(self.url, self.commit, job.name, params_text(self.baseline, job.inr, job.seed),
                     tuple(set_args(self.baseline, job.inr, job.seed)), self.stage)
            for job in jobs
        ]  # fmt: skip
        outcomes = map_tasks(fit_in_clone, fits, self.client)
        pushed = [job.name for job, (code, _) in zip(jobs, outcomes, strict=True) if code == 0]
        pull = subprocess.run([self.dvc, "exp", "pull", "-f", ORIGIN, *pushed], cwd=self.repo,
                              capture_output=True, text=True, check=False) if pushed else None  # fmt: skip
        rows, why = self.exp_show()
        results = []
        for job, (code, error) in zip(jobs, outcomes, strict=True):
            if code != 0:
                results.append(RunResult(None, f"exit {code}: {error}", job.name))
            elif pull is not None and pull.returncode != 0:
                results.append(RunResult(None, f"dvc exp pull: {tail(pull.stderr or pull.stdout)}", job.name))
            else:
                results.append(self.committed_metrics(rows or [], job.name) if rows is not None else
                               RunResult(None, why, job.name))  # fmt: skip
        return results

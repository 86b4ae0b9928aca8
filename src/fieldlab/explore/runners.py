"""Ways to run one INR fit: a git-linked ``dvc exp run``, or the stage command in a fresh subprocess (``--no-dvc``).

Both take the full ``inr`` section of the configuration (and optionally another top-level ``seed``, for a
robustness repeat) and return the stage's metrics or the error text. The runners of a round of several fits at
once (``explore.parallel > 1``) build on these: :mod:`fieldlab.explore.batch` (this machine) and
:mod:`fieldlab.explore.remote` (a Dask cluster).

``dvc exp run -S inr.lr=1e-05`` writes ``lr: 1e-05`` into params.yaml, which a plain YAML 1.1 reader
(``yaml.safe_load``) reads back as the *string* ``'1e-05'`` (the project's loader,
:func:`fieldlab.config.core.yaml_load`, reads a number). So the runner first writes the whole configuration
itself (PyYAML writes ``1.0e-05``), then passes ``-S`` for every value (nested ones as ``inr.ngp.levels``) that
differs from the baseline and whose text survives DVC's rewrite for any reader (scalars, but not floats in
exponent notation); the experiment records the same values either way.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fieldlab.config import yaml_load
from fieldlab.explore.keys import flatten


@dataclass(frozen=True)
class RunResult:
    """Metrics of a finished fit, or ``metrics is None`` and ``error`` for a failed one."""

    metrics: dict[str, Any] | None
    error: str = ""
    exp_name: str = ""
    commit: str = ""
    command: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """One fit of a round: experiment name, full ``inr`` params and the seed of a robustness repeat (else ``None``)."""

    name: str
    inr: dict[str, Any]
    seed: int | None = None


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the child get SIGTERM when the driver dies, so a killed study leaves no orphan fit behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def tail(text: str, n: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _tool(name: str) -> str:
    """``name`` next to the running interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def params_text(baseline: dict[str, Any], inr: dict[str, Any], seed: int | None = None) -> str:
    """The baseline params with the ``inr`` section (and ``seed``, unless ``None``) replaced, as YAML that PyYAML
    reads back exactly."""
    full = dict(baseline)
    full["inr"] = dict(inr)
    if seed is not None:
        full["seed"] = seed
    return yaml.safe_dump(full, sort_keys=False)


def set_args(baseline: dict[str, Any], inr: dict[str, Any], seed: int | None = None) -> list[str]:
    """The ``-S`` arguments of ``dvc exp run`` for ``inr`` (and ``seed``) over the ``baseline`` params: every value
    that differs from the baseline and survives DVC's rewrite (:func:`dvc_safe`), nested keys dotted.

    Examples
    --------
    >>> set_args({"inr": {"lr": 1e-4, "ngp": {"levels": 16}}}, {"lr": 1e-5, "ngp": {"levels": 18}}, seed=3)
    ['-S', 'inr.ngp.levels=18', '-S', 'seed=3']
    """
    base = flatten(baseline.get("inr") or {})
    changed = {k: v for k, v in flatten(inr).items() if base.get(k) != v and dvc_safe(v)}
    sets = [a for k, v in changed.items() for a in ("-S", f"inr.{k}={json.dumps(v)}")]
    if seed is not None:
        sets += ["-S", f"seed={int(seed)}"]
    return sets


def dvc_env() -> dict[str, str]:
    """This environment with the running interpreter's folder first on PATH (``python`` and ``dvc`` of the venv)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def dvc_safe(value: Any) -> bool:
    """Whether ``-S key=value`` keeps ``value`` for a YAML 1.1 reader: a scalar, not a float with an exponent.

    Mappings and lists are left to the params file written before the run (nested keys are passed one by one).
    """
    if isinstance(value, float):
        return "e" not in repr(value)
    return isinstance(value, str | int | bool)


def read_metrics(path: Path) -> tuple[dict[str, Any] | None, str]:
    """Metrics JSON with a numeric ``final_r2``, or ``None`` and why not."""
    if not path.is_file():
        return None, f"{path} was not written"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None, f"{path} is not valid JSON"
    got = data.get("final_r2") if isinstance(data, dict) else None
    if not finite_r2(got):
        return None, f"{path}: final_r2 = {got!r}: expected a finite number"
    return data, ""


def finite_r2(value: Any) -> bool:
    """A usable R2: a finite number (a NaN fit is a failed node, not a score)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class SubprocessRunner:
    """``--no-dvc``: run ``stage_cmd --params FILE`` in the workspace, in a new process (code edits reload)."""

    def __init__(self, workspace: str | Path, stage_cmd: str, metrics_file: str, baseline: dict[str, Any]) -> None:
        self.workspace = Path(workspace)
        self.stage_cmd = stage_cmd
        self.metrics_file = metrics_file
        self.baseline = baseline

    def command(self, params_file: str) -> list[str]:
        """The stage command reading ``params_file`` (``python``: the running interpreter)."""
        cmd = [*shlex.split(self.stage_cmd), "--params", params_file]
        if cmd[0] == "python":
            cmd[0] = sys.executable
        return cmd

    def write_params(self, name: str, inr: dict[str, Any], seed: int | None = None) -> str:
        """A temporary params file of the fit (the caller removes it)."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"{name}-", delete=False) as fh:
            fh.write(params_text(self.baseline, inr, seed))
        return fh.name

    def run(self, name: str, inr: dict[str, Any], seed: int | None = None) -> RunResult:
        metrics_path = self.workspace / self.metrics_file
        metrics_path.unlink(missing_ok=True)
        params_file = self.write_params(name, inr, seed)
        cmd = self.command(params_file)
        try:
            proc = subprocess.run(
                cmd, cwd=self.workspace, capture_output=True, text=True, check=False, preexec_fn=die_with_parent
            )
        finally:
            os.unlink(params_file)
        return self.result(proc.returncode, proc.stdout, proc.stderr, metrics_path, cmd)

    @staticmethod
    def result(returncode: int, stdout: str, stderr: str, metrics_path: Path, cmd: list[str]) -> RunResult:
        """The outcome of a finished stage process: its metrics, or the exit status and the tail of its output."""
        if returncode != 0:
            return RunResult(None, f"exit {returncode}: {tail(stderr or stdout)}", command=cmd)
        metrics, why = read_metrics(metrics_path)
        return RunResult(metrics, why, command=cmd)


class DvcRunner:
    """``dvc exp run -n NAME -S inr.KEY=VALUE ... STAGE`` in a git repository; params.yaml reset before and after."""

    def __init__(self, repo: str | Path, stage: str, metrics_file: str, baseline_text: str) -> None:
        self.repo = Path(repo)
        self.stage = stage
        self.metrics_file = metrics_file
        self.baseline_text = baseline_text
        self.baseline = yaml_load(baseline_text) or {}
        self.dvc = _tool("dvc")

    def _git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.repo, capture_output=True, text=True, check=False)
        return proc.stdout

    def _drop_existing(self, name: str) -> None:
        """Remove an experiment of the same name left by an interrupted run (resume re-runs the iteration)."""
        refs = self._git("for-each-ref", "--format=%(refname)", "refs/exps").split()
        if any(r.rsplit("/", 1)[-1] == name for r in refs):
            subprocess.run([self.dvc, "exp", "remove", name], cwd=self.repo, capture_output=True, check=False)

    def reset_params(self) -> None:
        (self.repo / "params.yaml").write_text(self.baseline_text)

    def run(self, name: str, inr: dict[str, Any], seed: int | None = None) -> RunResult:
        self._drop_existing(name)
        (self.repo / "params.yaml").write_text(params_text(self.baseline, inr, seed))
        cmd = [self.dvc, "exp", "run", "-n", name, *set_args(self.baseline, inr, seed), self.stage]
        try:
            proc = subprocess.run(
                cmd, cwd=self.repo, capture_output=True, text=True, check=False, env=dvc_env(),
                preexec_fn=die_with_parent,
            )  # fmt: skip
        finally:
            self.reset_params()
        if proc.returncode != 0:
            return RunResult(None, f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}", name, "", cmd)
        metrics, commit, why = self.exp_metrics(name)
        local, _ = read_metrics(self.repo / self.metrics_file)  # the run just applied to the workspace
        if metrics is not None and local is not None and local["final_r2"] == metrics["final_r2"]:
            metrics = {**local, **metrics}  # dvc exp show drops list values (e.g. per-component ssim)
        return RunResult(metrics, why, name, commit, cmd)

    def exp_show(self, timeout_s: float | None = None) -> tuple[list[dict[str, Any]] | None, str]:
        """The rows of ``dvc exp show --json``, or ``None`` and why not (within ``timeout_s`` unless ``None``)."""
        try:
            proc = subprocess.run([self.dvc, "exp", "show", "--json"], cwd=self.repo, capture_output=True, text=True,
                                  check=False, timeout=timeout_s)  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, f"dvc exp show --json gave no answer within {timeout_s:g} s"
        try:
            rows = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return None, f"dvc exp show --json failed: {tail(proc.stderr, 3)}"
        return rows, ""

    def exp_metrics(self, name: str) -> tuple[dict[str, Any] | None, str, str]:
        """(metrics, commit, error) of experiment ``name`` from ``dvc exp show --json``."""
        rows, why = self.exp_show()
        return (None, "", why) if rows is None else self.metrics_in(rows, name)

    def metrics_in(self, rows: list[dict[str, Any]], name: str) -> tuple[dict[str, Any] | None, str, str]:
        """(metrics, commit, error) of experiment ``name`` in the rows of ``dvc exp show --json``."""
        for row in rows:
            for exp in row.get("experiments") or []:
                for rev in exp.get("revs") or []:
                    if rev.get("name") != name:
                        continue
                    entry = ((rev.get("data") or {}).get("metrics") or {}).get(self.metrics_file) or {}
                    data = entry.get("data")
                    if not isinstance(data, dict) or not finite_r2(data.get("final_r2")):
                        got = data.get("final_r2") if isinstance(data, dict) else None
                        why = f"experiment {name}: {self.metrics_file}: final_r2 = {got!r}: expected a finite number"
                        return None, rev.get("rev", ""), why
                    return data, rev.get("rev", ""), ""
        return None, "", f"experiment {name} not found in dvc exp show"

    def committed_metrics(self, rows: list[dict[str, Any]], name: str) -> RunResult:
        """Experiment ``name``'s outcome from the rows of ``dvc exp show --json``, its metrics completed by the file as
        the experiment committed it (``cache: false``; exp show drops list values such as per-component ssim)."""
        metrics, rev, why = self.metrics_in(rows, name)
        if metrics is not None and rev:
            shown = subprocess.run(["git", "show", f"{rev}:{self.metrics_file}"], cwd=self.repo,
                                   capture_output=True, text=True, check=False)  # fmt: skip
            try:
                full = json.loads(shown.stdout) if shown.returncode == 0 else None
            except json.JSONDecodeError:
                full = None
            if isinstance(full, dict) and full.get("final_r2") == metrics["final_r2"]:
                metrics = {**full, **metrics}
        return RunResult(metrics, why, name, rev)

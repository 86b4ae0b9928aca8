"""Ways to run one INR fit: a git-linked ``dvc exp run``, or the stage command in a fresh subprocess (``--no-dvc``).

Both take the full ``inr`` section of the configuration (and optionally another top-level ``seed``, for a
robustness repeat) and return the stage's metrics or the error text.

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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the child get SIGTERM when the driver dies, so a killed study leaves no orphan fit behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _tail(text: str, n: int = 20) -> str:
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

    def run(self, name: str, inr: dict[str, Any], seed: int | None = None) -> RunResult:
        metrics_path = self.workspace / self.metrics_file
        metrics_path.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"{name}-", delete=False) as fh:
            fh.write(params_text(self.baseline, inr, seed))
        cmd = [*shlex.split(self.stage_cmd), "--params", fh.name]
        if cmd[0] == "python":
            cmd[0] = sys.executable
        try:
            proc = subprocess.run(
                cmd, cwd=self.workspace, capture_output=True, text=True, check=False, preexec_fn=_die_with_parent
            )
        finally:
            os.unlink(fh.name)
        if proc.returncode != 0:
            return RunResult(None, f"exit {proc.returncode}: {_tail(proc.stderr or proc.stdout)}", command=cmd)
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
        base = flatten(self.baseline.get("inr") or {})
        changed = {k: v for k, v in flatten(inr).items() if base.get(k) != v and dvc_safe(v)}
        sets = [a for k, v in changed.items() for a in ("-S", f"inr.{k}={json.dumps(v)}")]
        if seed is not None:
            sets += ["-S", f"seed={int(seed)}"]
        cmd = [self.dvc, "exp", "run", "-n", name, *sets, self.stage]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        try:
            proc = subprocess.run(
                cmd, cwd=self.repo, capture_output=True, text=True, check=False, env=env, preexec_fn=_die_with_parent
            )
        finally:
            self.reset_params()
        if proc.returncode != 0:
            return RunResult(None, f"exit {proc.returncode}: {_tail(proc.stderr or proc.stdout)}", name, "", cmd)
        metrics, commit, why = self.exp_metrics(name)
        local, _ = read_metrics(self.repo / self.metrics_file)  # the run just applied to the workspace
        if metrics is not None and local is not None and local["final_r2"] == metrics["final_r2"]:
            metrics = {**local, **metrics}  # dvc exp show drops list values (e.g. per-component ssim)
        return RunResult(metrics, why, name, commit, cmd)

    def exp_metrics(self, name: str) -> tuple[dict[str, Any] | None, str, str]:
        """(metrics, commit, error) of experiment ``name`` from ``dvc exp show --json``."""
        proc = subprocess.run(
            [self.dvc, "exp", "show", "--json"], cwd=self.repo, capture_output=True, text=True, check=False
        )
        try:
            rows = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return None, "", f"dvc exp show --json failed: {_tail(proc.stderr, 3)}"
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

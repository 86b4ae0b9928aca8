"""Bad input to any file fieldlab reads: one ``error:`` line naming the file, exit status 2, nothing written.

Each case builds a small workspace -- a params file, the inputs with exactly one defect, and the outputs of an
earlier run -- and runs the real command line (``python -m fieldlab ...``) or a stage script in a subprocess. It
checks that the exit status is 2; that stderr is exactly one line, ``error: ...``, with no traceback; that the line
names the offending file (and key); and that every file and folder of the workspace is byte-identical afterwards
(no half-written output, no deleted figures, no truncated journal).

The inputs are tiny (an 8 x 6 x 6 corpus, 40 particles over 4 frames, a 4-channel operator), and every command is
meant to fail before any heavy work. The selected cases run concurrently, each in its own process and workspace,
so the table stays fast on two cores. :func:`test_the_valid_inputs_are_accepted` checks the untouched inputs with
the same readers, so each case fails for its defect and not for a broken fixture.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support_train import BASE_GRID, make_sample, write_corpus

from fieldlab.core.io import save_npz

REPO = Path(__file__).resolve().parents[1]
#: A 4-channel operator: checkpoints of a few thousand numbers, built in milliseconds.
MODEL = {
    "encoder": {"channels": 4, "hidden": 4, "layers": 1},
    "conditioning": {"hidden": 4},
    "fno": {"width": 4, "modes": [2, 2, 2], "layers": 1},
    "unet": {"base": 4, "depth": 1, "groups": 1},
}
POTENTIAL = {
    "seed": 0,
    "device": "cpu",
    "data": {"root": "data/potential"},
    "model": MODEL,
    "train": {"epochs": 1, "batch_size": 2, "amp": False, "augment": False},
    "loss": {"singularity_radius": 1.0},
    "log": {"root": "experiments", "progress": False},
    "eval": {"figures": 1},
}
RAW = {
    "seed": 0,
    "data": {"source": "raw", "raw_dir": "data/raw/potential", "root": "data/potential"},
}
RAW["data"].update(n_train=1, n_val=1, n_test=1)
INR = {
    "seed": 0,
    "inr": {
        "model": "siren_id",
        "field_name": "Jp",
        "scene": "discs_3types",
        "data_root": "data/mpm",
        "n_training_frames": 4,
        "hidden_features": 8,
        "hidden_layers": 1,
        "total_steps": 2,
        "device": "cpu",
    },
}
TRAJECTORY = "data/mpm/discs_3types/trajectory.npz"
CLI = ["-m", "fieldlab"]
EVAL = [*CLI, "eval-sr", "--params", "params.yaml", "--metrics", "metrics/eval_sr.json", "--figures", "plots/eval_sr"]
TRAIN = [*CLI, "train", "--params", "params.yaml", "--backbone", "fno", "--out", "experiments/fno", "--resume"]
TRAIN += ["--metrics", "metrics/train_fno.json", "--plots", "plots/train_fno.csv"]
INR_FIT = [*CLI, "inr-fit", "--params", "params.yaml", "--out", "out", "--quiet"]
SIMULATE = [*CLI, "simulate-potential", "--params", "params.yaml", "--no-progress"]
EXPLORE = [*CLI, "explore", "--params", "params.yaml", "--out", "explore", "--no-dvc", "--resume"]
EXPLORE += ["--blocks", "1", "--iters", "1"]


def stage(name: str) -> str:
    return str(REPO / "stages" / f"{name}.py")


@dataclass(frozen=True)
class Run:
    """The command of one case (arguments after the interpreter) and the words its error line must contain."""

    args: list[str]
    names: tuple[str, ...]


# ---- inputs -----------------------------------------------------------------------------------------------------
def write(path: Path, data: bytes | str | dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        data = yaml.safe_dump(data, sort_keys=False)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def earlier_outputs(ws: Path, *files: str) -> None:
    """Outputs of an earlier run, which a failed run must leave as they are."""
    for name in files:
        write(ws / name, f"earlier output {name}\n")


def raw_sample(factor: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A schema- and physics-valid user sample: the training helper's field with a zero-net-current source."""
    arrays = make_sample(np.random.default_rng([seed, 7]), BASE_GRID, factor)
    source = arrays["source"].astype(np.float64)
    arrays["source"] = (source - source.mean()).astype(np.float32)  # every voxel is tissue: net current 0
    return arrays


def raw_workspace(ws: Path, edit: Callable[[dict[str, Path]], None] | None = None) -> dict[str, Path]:
    """Three raw files (train, val, test), a test_2x file, params importing them, an earlier corpus."""
    write(ws / "params.yaml", RAW)
    raw = ws / "data" / "raw" / "potential"
    files = {f"user_{k}": raw / f"user_{k}.npz" for k in range(3)}
    for k, path in enumerate(files.values()):
        save_npz(path, **raw_sample(seed=k))
    files["fine"] = raw / "test_2x" / "user_2.npz"
    save_npz(files["fine"], **raw_sample(factor=2, seed=2))
    earlier_outputs(ws, "data/potential/train/0000.npz", "data/potential/manifest.json", "metrics/prepare.json")
    if edit is not None:
        edit(files)
    return files


def rewrite(path: Path, **changes: np.ndarray | None) -> None:
    """Rewrite an ``.npz`` with some arrays replaced (``None``: removed)."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@functools.cache
def _checkpoint(backbone: str) -> dict:
    from fieldlab.config import config_from_dict, to_dict
    from fieldlab.core.checkpoint import rng_state
    from fieldlab.potential.models.wrapper import build_model

    cfg = config_from_dict({"model": MODEL}).model
    torch.manual_seed(0)
    model = build_model(cfg, backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    return {
        "model": model.state_dict(),
        "model_config": to_dict(cfg),
        "backbone": backbone,
        "transforms": {"f_scale": 1e4, "u_scale": 1e-3},
        "reference_spacing": [0.01, 0.01, 0.01],
        "grid": list(BASE_GRID),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": 1,
        "step": 1,
        "best_val_rel_l2": 0.5,
        "history": [],
        "train_time_s": 1.0,
        "rng": rng_state(),
    }


def checkpoint(backbone: str = "fno") -> dict:
    """A complete checkpoint of the tiny operator (a fresh copy, free to edit)."""
    return copy.deepcopy(_checkpoint(backbone))


class Bytes(bytes):
    """File contents to write as they are (a damaged checkpoint), not through ``torch.save``."""


def save(path: Path, obj: object) -> Path:
    if isinstance(obj, Bytes):
        return write(path, bytes(obj))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def npy_bytes(array: np.ndarray) -> bytes:
    """A bare ``.npy`` file's contents (what ``np.save`` writes), to be found where an ``.npz`` belongs."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def eval_workspace(ws: Path, ckpt: object | None = None) -> Path:
    """Params, a corpus, the checkpoint ``ckpt/fno.pt`` and the metrics and figures of an earlier evaluation."""
    write(ws / "params.yaml", POTENTIAL)
    write_corpus(ws / "data" / "potential", counts=(2, 1, 1))
    earlier_outputs(ws, "metrics/eval_sr.json", "plots/eval_sr/fno_base_0000.png")
    return save(ws / "ckpt" / "fno.pt", checkpoint() if ckpt is None else ckpt)


def train_workspace(ws: Path, last: object | None, params: dict | None = None) -> Path:
    """Params, a corpus, an earlier run of fno (best.pt, events, metrics, history) and ``last.pt`` (if given)."""
    write(ws / "params.yaml", POTENTIAL if params is None else params)
    write_corpus(ws / "data" / "potential", counts=(2, 1, 1))
    run = ws / "experiments" / "fno"
    save(run / "checkpoints" / "best.pt", checkpoint())
    earlier_outputs(ws, "experiments/fno/tensorboard/events.out", "metrics/train_fno.json", "plots/train_fno.csv")
    if last is not None:
        save(run / "checkpoints" / "last.pt", last)
    return run / "checkpoints" / "last.pt"


def trajectory_arrays() -> dict[str, np.ndarray]:
    from fieldlab.inr.data import synthetic_trajectory

    return synthetic_trajectory(n_frames=4, n_particles=40, seed=0)


def inr_workspace(ws: Path, **changes: np.ndarray | None) -> Path:
    """Params of a tiny fit, a trajectory with ``changes``, and the outputs of an earlier fit."""
    write(ws / "params.yaml", INR)
    arrays = trajectory_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = ws / TRAJECTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    earlier_outputs(ws, "out/metrics/inr.json", "out/artifacts/inr/analysis.log", "metrics/inr.json")
    return path


def node(id: int, parent: int | None = None, r2: float | None = 0.9, **fields: object) -> dict:
    """One journal node of block 1 (iteration = id), as the driver writes it."""
    data = {"id": id, "parent": parent, "block": 1, "iteration": id, "params": {"model": "siren_id", "lr": 1e-4}}
    data.update(metrics={} if r2 is None else {"final_r2": r2}, status="failed" if r2 is None else "ok")
    data.update(fields)
    return data


def lines(*nodes: dict | str) -> bytes:
    return "".join((n if isinstance(n, str) else json.dumps(n)) + "\n" for n in nodes).encode()


def explore_workspace(ws: Path, journal: bytes, baseline: str | None = None) -> Path:
    """A study in ``explore/`` whose first iteration is done (``--blocks 1 --iters 1`` has nothing left to run)."""
    params = {"seed": 0, "inr": INR["inr"]}
    write(ws / "params.yaml", params)
    out = ws / "explore"
    write(out / "baseline_params.yaml", yaml.safe_dump(params) if baseline is None else baseline)
    earlier_outputs(ws, "explore/ucb_scores.txt", "explore/inr_memory.md")
    return write(out / "journal.jsonl", journal)


# ---- the cases --------------------------------------------------------------------------------------------------
def params_case(text: bytes | str, *names: str, args: list[str] | None = None) -> Callable[[Path], Run]:
    def setup(ws: Path) -> Run:
        write(ws / "params.yaml", text)
        earlier_outputs(ws, "metrics/prepare.json")
        return Run(args or [*CLI, "config", "--params", "params.yaml"], ("params.yaml", *names))

    return setup


def raw_case(edit: Callable[[dict[str, Path]], None], target: str, *words: str, via_stage: bool = False):
    def setup(ws: Path) -> Run:
        raw_workspace(ws, edit)
        path = f"data/raw/potential/{'test_2x/user_2' if target == 'fine' else target}.npz"
        return Run([stage("prepare"), "--params", "params.yaml"] if via_stage else SIMULATE, (path, *words))

    return setup


def eval_case(make: Callable[[], object], *words: str, backbone: str = "fno") -> Callable[[Path], Run]:
    def setup(ws: Path) -> Run:
        eval_workspace(ws, make())
        return Run([*EVAL, "--backbone", backbone, "--checkpoint", "ckpt/fno.pt"], ("ckpt/fno.pt", *words))

    return setup


def resume_case(make: Callable[[], object] | None, *words: str, params: dict | None = None, via_stage=False):
    def setup(ws: Path) -> Run:
        train_workspace(ws, None if make is None else make(), params)
        args = [stage("train"), "--params", "params.yaml", "--backbone", "fno", "--resume"] if via_stage else TRAIN
        return Run(args, ("experiments/fno/checkpoints/last.pt", *words))

    return setup


def inr_case(*words: str, via_stage: bool = False, damage: Callable[[Path], None] | None = None, **changes):
    def setup(ws: Path) -> Run:
        path = inr_workspace(ws, **changes)
        if damage is not None:
            damage(path)
        return Run([stage("inr_block"), "--params", "params.yaml"] if via_stage else INR_FIT, (TRAJECTORY, *words))

    return setup


def journal_case(journal: bytes, *words: str, baseline: str | None = None) -> Callable[[Path], Run]:
    def setup(ws: Path) -> Run:
        explore_workspace(ws, journal, baseline)
        file = "explore/baseline_params.yaml" if baseline is not None else "explore/journal.jsonl"
        return Run(EXPLORE, (file, *words))

    return setup


def _without(key: str, ckpt_make=checkpoint) -> Callable[[], dict]:
    return lambda: {k: v for k, v in ckpt_make().items() if k != key}


def _edited(**changes: object) -> Callable[[], dict]:
    return lambda: {**checkpoint(), **changes}


def _nan_weights() -> dict:
    ckpt = checkpoint()
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    return ckpt


def _wider_model_config() -> dict:
    ckpt = checkpoint()
    ckpt["model_config"]["fno"]["width"] = 8  # the weights are those of width 4
    return ckpt


def _truncated_checkpoint() -> Bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint(), buffer)
    return Bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _eval_stage_truncated(ws: Path) -> Run:
    """The stage reads ``<log.root>/<model.backbone>/checkpoints/best.pt``."""
    eval_workspace(ws)
    best = "experiments/fno/checkpoints/best.pt"
    save(ws / best, _truncated_checkpoint())
    return Run([stage("eval_sr"), "--params", "params.yaml"], (best, "not a readable"))


def _truncate_file(key: str) -> Callable[[dict[str, Path]], None]:
    return lambda files: truncate(files[key])


def _edit_file(key: str, **changes) -> Callable[[dict[str, Path]], None]:
    return lambda files: rewrite(files[key], **changes)


def _zero_size(files: dict[str, Path]) -> None:
    arrays = raw_sample()
    empty = {k: v[:0] for k, v in arrays.items() if k not in ("spacing", "source_point", "source_index")}
    save_npz(files["user_1"], **{**arrays, **empty})


_NAN_U = raw_sample(seed=1)["u"].copy()
_NAN_U[2, 3, 3] = np.nan
_HALF_MASK = np.full(raw_sample()["mask"].shape, 0.5)
_T, _N = 4, 40
_NAN_X = trajectory_arrays()["x"].copy()
_NAN_X[1, 5, 0] = np.nan

CASES: dict[str, Callable[[Path], Run]] = {
    # params.yaml: the first thing every command reads
    "params-empty-file": params_case("", "empty params file"),
    "params-only-comments-via-prepare-stage": params_case(
        "# nothing yet\n", "empty params file", args=[stage("prepare"), "--params", "params.yaml"]
    ),
    "params-truncated-yaml": params_case("train:\n  lr: [1e-3,\n", "not valid YAML"),
    "params-top-level-list": params_case("- train\n- model\n", "expected a mapping"),
    "params-not-utf8": params_case(b"train:\n  lr: \xff\xfe\n", "not UTF-8"),
    "params-duplicate-key": params_case("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "duplicate key 'lr'"),
    "params-nan-in-unbounded-range": params_case("data:\n  coord_range: [.nan, 1.0]\n", "data.coord_range"),
    "params-wrong-type": params_case("train:\n  epochs: ten\n", "train.epochs", "an integer"),
    # raw potential samples (data.source: raw)
    "raw-truncated": raw_case(_truncate_file("user_1"), "user_1", "not a readable .npz"),
    "raw-truncated-via-prepare-stage": raw_case(_truncate_file("user_0"), "user_0", "not a readable", via_stage=True),
    "raw-empty-file": raw_case(lambda f: f["user_1"].write_bytes(b""), "user_1", "EOFError"),
    "raw-bare-npy": raw_case(lambda f: f["user_1"].write_bytes(npy_bytes(np.zeros(3))), "user_1", "single .npy"),
    "raw-missing-key": raw_case(_edit_file("user_1", u=None), "user_1", "missing key", "u"),
    "raw-nan-potential": raw_case(_edit_file("user_1", u=_NAN_U), "user_1", "u holds non-finite"),
    "raw-mask-not-boolean": raw_case(_edit_file("user_1", mask=_HALF_MASK), "user_1", "mask", "float64"),
    "raw-zero-size-grid": raw_case(_zero_size, "user_1", "u has shape (0, 6, 6)"),
    "raw-truncated-2x-file": raw_case(_truncate_file("fine"), "fine", "not a readable"),
    "raw-nan-in-2x-file": raw_case(
        _edit_file("fine", u=np.full((16, 12, 12), np.nan, np.float32)), "fine", "u holds non-finite"
    ),
    # checkpoints given to eval-sr
    "checkpoint-truncated": eval_case(_truncated_checkpoint, "not a readable"),
    "checkpoint-not-a-dict": eval_case(lambda: [1, 2, 3], "holds a list"),
    "checkpoint-missing-key": eval_case(_without("transforms"), "lacks transforms"),
    "checkpoint-of-another-backbone": eval_case(checkpoint, "backbone 'fno'", "expected 'unet'", backbone="unet"),
    "checkpoint-nan-weights": eval_case(_nan_weights, "non-finite weights"),
    "checkpoint-weights-do-not-fit": eval_case(_wider_model_config, "weights do not fit"),
    "checkpoint-bad-model-config": eval_case(_edited(model_config={"fno": {"width": -1}}), "model.fno.width"),
    "checkpoint-nan-transforms": eval_case(_edited(transforms={"f_scale": 1e4, "u_scale": float("nan")}), "u_scale"),
    "checkpoint-missing-reference-spacing": eval_case(_without("reference_spacing"), "reference_spacing"),
    "checkpoint-truncated-via-eval-stage": _eval_stage_truncated,
    # train --resume
    "resume-without-checkpoint": resume_case(None, "no checkpoint to resume from"),
    "resume-without-checkpoint-via-train-stage": resume_case(None, "no checkpoint to resume", via_stage=True),
    "resume-from-another-backbone": resume_case(lambda: checkpoint("unet"), "backbone 'unet'", "expected 'fno'"),
    "resume-checkpoint-lacks-optimizer": resume_case(_without("optimizer"), "lacks optimizer"),
    "resume-with-another-model-section": resume_case(
        checkpoint, "model.fno.width", params={**POTENTIAL, "model": {**MODEL, "fno": {**MODEL["fno"], "width": 8}}}
    ),
    # MPM trajectories read by inr-fit and the inr_block stage
    "trajectory-truncated": inr_case("not a readable .npz", damage=truncate),
    "trajectory-truncated-via-inr-stage": inr_case("not a readable", via_stage=True, damage=truncate),
    "trajectory-missing-field": inr_case("missing array", "Jp", Jp=None),
    "trajectory-field-wrong-shape": inr_case("Jp has shape (4, 40, 3)", Jp=np.ones((_T, _N, 3), np.float32)),
    "trajectory-positions-wrong-shape": inr_case("x has shape (4, 40, 3)", x=np.ones((_T, _N, 3), np.float32)),
    "trajectory-nan-positions": inr_case("x has non-finite values", x=_NAN_X),
    "trajectory-field-not-numeric": inr_case("Jp has dtype", Jp=np.full((_T, _N), "a")),
    "trajectory-material-not-integer": inr_case("material has dtype float", material=np.zeros(_N)),
    # the exploration journal (and the study's saved baseline) read by explore --resume
    "journal-bad-middle-line": journal_case(lines(node(1), "{oops", node(2, 1)), "line 2", "not valid JSON"),
    "journal-bad-last-line-with-newline": journal_case(lines(node(1), "{oops"), "line 2", "not valid JSON"),
    "journal-line-not-an-object": journal_case(lines(node(1), "[1, 2]"), "line 2", "JSON list"),
    "journal-bytes-not-utf8": journal_case(lines(node(1)) + b'{"id": "\xff"}\n' + lines(node(2, 1)), "line 2"),
    "journal-unknown-status": journal_case(lines(node(1), node(2, 1, status="running")), "line 2", "status"),
    "journal-ok-node-without-r2": journal_case(lines(node(1), node(2, 1, metrics={})), "line 2", "final_r2"),
    "journal-nan-r2": journal_case(lines(node(1, r2=float("nan"))), "line 1", "final_r2 = nan"),
    "journal-unknown-parent": journal_case(lines(node(1), node(2, 7)), "node 2", "parent 7"),
    "journal-baseline-not-yaml": journal_case(lines(node(1)), "not valid YAML", baseline="inr: [1,\n"),
}


# ---- running them -----------------------------------------------------------------------------------------------
#: Seconds one case may run; each fails in a few when the input is refused.
TIMEOUT_S = 120


@dataclass(frozen=True)
class Outcome:
    run: Run
    returncode: int | None
    stdout: str
    stderr: str
    before: dict[str, bytes | None]
    after: dict[str, bytes | None]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (``None``) under ``root``, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def execute(name: str, ws: Path, home: Path) -> Outcome:
    run = CASES[name](ws)
    before = snapshot(ws)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO / "src"),
        "HOME": str(home),
        "MPLCONFIGDIR": str(home / "mpl"),
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        proc = subprocess.run(
            [sys.executable, *run.args], cwd=ws, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:  # e.g. a silent default that starts real work instead of failing
        return Outcome(run, None, "", f"still running after {TIMEOUT_S} s", before, snapshot(ws))
    return Outcome(run, proc.returncode, proc.stdout, proc.stderr, before, snapshot(ws))


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcome]]]:
    """Start every selected case at once, each in its own workspace (they share nothing); a case's own test waits."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_bad_input_is_one_error_line" and hasattr(item, "callspec")
    ]
    home = tmp_path_factory.mktemp("home")
    jobs = {name: (tmp_path_factory.mktemp(name) / "ws", home) for name in selected}
    for ws, _ in jobs.values():
        ws.mkdir()
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        yield {name: pool.submit(execute, name, *job) for name, job in jobs.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line(name: str, outcomes: dict[str, Future[Outcome]]) -> None:
    out = outcomes[name].result()
    shown = f"exit {out.returncode}\nstdout:\n{out.stdout[-2000:]}\nstderr:\n{out.stderr[-4000:]}"
    assert out.returncode == 2, shown
    assert "Traceback" not in out.stderr, shown
    stderr = out.stderr.splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: "), shown
    for word in out.run.names:
        assert word in stderr[0], f"{word!r} not in {stderr[0]!r}"
    changed = sorted(k for k in out.before.keys() | out.after.keys() if out.before.get(k, 0) != out.after.get(k, 0))
    assert not changed, f"the failed run changed {changed}"


def test_the_table_spans_every_kind_of_input() -> None:
    kinds = {name.split("-")[0] for name in CASES}
    assert kinds == {"params", "raw", "checkpoint", "resume", "trajectory", "journal"}
    assert 40 <= len(CASES) <= 50


def test_the_valid_inputs_are_accepted(tmp_path: Path) -> None:
    """The untouched inputs of every kind pass the same readers, so a case fails for its defect alone."""
    from fieldlab.config import load_config, to_dict
    from fieldlab.core.checkpoint import check_resume
    from fieldlab.explore.journal import Journal
    from fieldlab.inr.data import load_field_window
    from fieldlab.potential.models.trained import evaluation_inputs, load_trained
    from fieldlab.potential.physics.corpus import validate_raw_file

    files = raw_workspace(tmp_path / "raw")
    for path in files.values():
        validate_raw_file(path)
    cfg = load_config(write(tmp_path / "params.yaml", POTENTIAL))
    last = train_workspace(tmp_path / "train", checkpoint())
    check_resume(last, "fno", to_dict(cfg.model))
    _, ckpt = load_trained(last, torch.device("cpu"), backbone="fno")
    assert evaluation_inputs(ckpt, last)[2] == BASE_GRID
    window = load_field_window(inr_workspace(tmp_path / "inr"), "Jp", 0, 4)
    assert window.values.shape == (4, 40, 1)
    journal = explore_workspace(tmp_path / "explore", lines(node(1), node(2, 1), node(3, 1, r2=None)))
    assert [n.id for n in Journal(journal).load()] == [1, 2, 3]

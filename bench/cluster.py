"""Parallel work against its serial run: prepare on a local Dask cluster, and the exploration's rounds of fits (JSON).

Two measurements, each contender run in turn within every repeat (interleaved), medians over the repeats, and
ratios reported (the seconds are context: they are this machine's):

``prepare``
    :func:`fieldlab.potential.physics.corpus.generate_corpus` of a slice of the default corpus (96 x 48 x 48, 16 + 2
    + 2 limbs, the 2 test and the first 2 training limbs also at 2x, the default physics) in this process
    (``client=None``) and on ``open_client(ClusterConfig(address="local", workers=w))`` for w = 1 and 2. The
    cluster's start-up and shut-down are timed apart from the corpus and added in a total. Every run's sample files
    are hashed: where the work ran must change no file (``identical_files``).
``explore``
    ``fieldlab explore`` with ``make explore``'s study (2 blocks x 4 iterations, ``explore.time_budget_s=20``,
    ``explore.ranges.total_steps=[100,1000]``) at ``explore.parallel`` = 1 and 2, through ``dvc exp run`` and
    DVC's queue (``--no-dvc``: stage processes) in a throw-away clone of this repository whose MPM trajectory
    (48 frames) is made there first. The baseline INR is ``siren_txy`` with 100 steps, so that the root's fit
    measures the machine and every later fit is sized to the budget (a ``pod`` root measures nothing and leaves
    the next network fit uncapped). DVC's run cache is emptied before each study (a repeat would otherwise be
    restored, not fitted). Reported: fits per hour, training steps per hour (of the network fits) and the rounds
    a study takes (a block's root runs alone, so 4 iterations take 3 rounds at k = 2: at most 4/3 the fits per
    hour of the serial study at equal fit times). Two thread settings, both arms alike: torch's default (as
    ``make explore`` runs; here two threads per fit, so two fits at once ask for four threads of two cores) and
    ``OMP_NUM_THREADS=1`` for the whole study. The thread count is the user's to set, for the serial and the
    parallel study alike: a fit's last digits depend on it, so the runners never change it.

Run (about two hours on 2 cores)::

    python bench/cluster.py --repeats 3 --work /tmp/bench-cluster

Every finished run (one contender of one repeat) is recorded in ``<work>/records.jsonl``: the same command after
an interruption goes on with the runs not recorded yet (``starts`` in the JSON counts the commands that took part).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from fieldlab.config import ClusterConfig, Config, DataConfig, yaml_load
from fieldlab.core.cluster import open_client
from fieldlab.potential.physics.corpus import generate_corpus

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STUDY = ["--blocks", "2", "--iters", "4", "explore.time_budget_s=20", "explore.ranges.total_steps=[100,1000]"]


def digest(root: Path) -> str:
    """One hash of every sample file under ``root`` (names and bytes; the manifest, which holds timings, aside)."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.npz")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class Records:
    """The finished runs of a bench folder, one JSON line each, keyed by part / contender / repeat."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lines = path.read_text().splitlines() if path.is_file() else []
        self.done = {r["key"]: r for r in map(json.loads, lines)}

    def add(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {"key": key, **record}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.done[key] = record
        return record


def prepare_run(data: DataConfig, cfg: Config, root: Path, workers: int) -> dict[str, Any]:
    """One corpus: its seconds (the cluster's start-up and shut-down apart) and the hash of its samples."""
    if workers == 0:
        t0 = time.perf_counter()
        generate_corpus(data, cfg.physics, cfg.seed, root, progress=False, client=None)
        record = {"run_s": time.perf_counter() - t0, "startup_s": 0.0}
    else:
        t0 = time.perf_counter()
        with open_client(ClusterConfig(address="local", workers=workers)) as client:
            t1 = time.perf_counter()
            generate_corpus(data, cfg.physics, cfg.seed, root, progress=False, client=client)
            t2 = time.perf_counter()
        record = {"run_s": t2 - t1, "startup_s": (t1 - t0) + (time.perf_counter() - t2)}
    record["hash"] = digest(root)
    shutil.rmtree(root)
    return record


def bench_prepare(repeats: int, tmp: Path, records: Records) -> dict[str, Any]:
    data = DataConfig(n_train=16, n_val=2, n_test=2, test_2x=True, n_ood=0, n_train_2x=2, n_val_2x=0, ood_2x=False)
    cfg = Config()
    times: dict[str, list[float]] = {"in_process": [], "w1": [], "w2": [], "w1_startup": [], "w2_startup": []}
    hashes = set()
    for rep in range(repeats):
        for name, workers in (("in_process", 0), ("w1", 1), ("w2", 2)):
            key = f"prepare/{name}/{rep}"
            if key not in records.done:
                records.add(key, prepare_run(data, cfg, tmp / key.replace("/", "-"), workers))
            record = records.done[key]
            times[name].append(record["run_s"])
            if workers:
                times[f"{name}_startup"].append(record["startup_s"])  # start-up and shut-down
            hashes.add(record["hash"])
    med = {k: statistics.median(v) for k, v in times.items()}
    out: dict[str, Any] = {
        "corpus": {"grid": list(data.grid), "limbs": [data.n_train, data.n_val, data.n_test], "limbs_2x": 4},
        "repeats": repeats,
        "identical_files": len(hashes) == 1,
        "median_s": {k: round(v, 2) for k, v in med.items()},
    }
    for w in ("w1", "w2"):
        out[f"speedup_{w}"] = round(med["in_process"] / med[w], 3)
        out[f"speedup_{w}_with_startup"] = round(med["in_process"] / (med[w] + med[f"{w}_startup"]), 3)
    out["target_speedup_w2"] = 1.7
    return out


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (exit {proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}")
    return proc


def make_clone(tmp: Path, env: dict[str, str]) -> Path:
    """A clone of this repository with this tree's params.yaml (tiny MPM and INR baseline, see the module notes), a
    dvc.yaml of the two stages the study needs, and the trajectory made and committed."""
    repo = tmp / "repo"
    run(["git", "clone", "-q", str(ROOT), str(repo)], tmp, env)
    params = yaml_load((ROOT / "params.yaml").read_text())
    params["mpm"]["frames"] = 48
    params["inr"].update(model="siren_txy", total_steps=100)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    dvc_yaml = {"stages": {name: stages[name] for name in ("simulate_mpm", "inr_block")}}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    (repo / "data" / "raw").mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run([*git, "commit", "-qam", "bench: tiny study"], repo, env)
    run(["dvc", "repro", "simulate_mpm"], repo, env)
    run(["git", "add", "dvc.lock"], repo, env)
    run([*git, "commit", "-qm", "bench: trajectory"], repo, env)
    return repo


def study_record(out: Path, wall_s: float) -> dict[str, Any]:
    nodes = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    ok = [n for n in nodes if n["status"] == "ok"]
    steps = sum(n["params"]["total_steps"] for n in ok if not str(n["params"].get("model", "")).startswith("pod"))
    return {"wall_s": wall_s, "fits": len(nodes), "failed": len(nodes) - len(ok), "train_steps": steps,
            "best_r2": max((n["metrics"]["final_r2"] for n in ok), default=None)}  # fmt: skip


def rounds(blocks: int, iters: int, k: int) -> int:
    """Rounds of a study: per block, the root alone, then ceil((iters - 1) / k)."""
    return blocks * (1 + math.ceil((iters - 1) / k))


#: thread settings of the whole study (both arms alike): torch's default, and one thread per fit
THREADS = {"default_threads": {}, "one_thread_per_fit": {"OMP_NUM_THREADS": "1"}}


def summarise(recs: list[dict[str, Any]], k: int) -> dict[str, Any]:
    return {
        "median_wall_s": round(statistics.median(r["wall_s"] for r in recs), 1),
        "fits_per_hour": round(statistics.median(3600 * r["fits"] / r["wall_s"] for r in recs), 1),
        "train_steps_per_hour": round(statistics.median(3600 * r["train_steps"] / r["wall_s"] for r in recs)),
        "rounds": rounds(2, 4, k),
        "failed": [r["failed"] for r in recs],
        "best_r2": [None if r["best_r2"] is None else round(r["best_r2"], 4) for r in recs],
    }


def bench_explore(repeats: int, tmp: Path, no_dvc: bool, log: Records) -> dict[str, Any]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    repo = tmp / "repo"
    if "explore/clone" not in log.done:
        shutil.rmtree(repo, ignore_errors=True)
        make_clone(tmp, env)
        log.add("explore/clone", {})
    records: dict[tuple[str, int], list[dict[str, Any]]] = {(t, k): [] for t in THREADS for k in (1, 2)}
    for rep in range(repeats):
        for threads, extra in THREADS.items():
            for k in (1, 2):
                key = f"explore/{threads}/k{k}/{rep}"
                if key not in log.done:
                    shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)
                    out = tmp / key.replace("/", "-")
                    shutil.rmtree(out, ignore_errors=True)  # what an interrupted command left
                    cmd = [str(BIN / "fieldlab"), "explore", "--out", str(out), *STUDY, f"explore.parallel={k}"]
                    t0 = time.perf_counter()
                    run([*cmd, *(["--no-dvc"] if no_dvc else [])], repo, {**env, **extra})
                    log.add(key, study_record(out, time.perf_counter() - t0))
                records[threads, k].append(log.done[key])
    result: dict[str, Any] = {
        "study": "2 blocks x 4 iterations, time_budget_s 20, total_steps [100, 1000], baseline siren_txy",
        "runner": "stage processes (--no-dvc)" if no_dvc else "dvc exp run; k = 2: dvc queue start --jobs 2",
        "repeats": repeats,
        "ratio_cap_from_rounds": round(rounds(2, 4, 1) / rounds(2, 4, 2), 3),
        "target_ratio_fits_per_hour": 1.6,
    }
    for threads in THREADS:
        one, two = summarise(records[threads, 1], 1), summarise(records[threads, 2], 2)
        result[threads] = {
            "k1": one,
            "k2": two,
            "ratio_fits_per_hour": round(two["fits_per_hour"] / one["fits_per_hour"], 3),
            "ratio_train_steps_per_hour": round(two["train_steps_per_hour"] / max(1, one["train_steps_per_hour"]), 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("prepare", "explore"), default=None, help="run one of the two")
    parser.add_argument("--no-dvc", action="store_true", help="explore through stage processes, not DVC")
    parser.add_argument("--work", default=None, help="folder of the runs (default: a new temporary one, removed)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fieldlab-bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    records = Records(work / "records.jsonl")
    starts = sum(key.startswith("start/") for key in records.done) + 1
    records.add(f"start/{starts}", {"time": time.time()})
    result: dict[str, Any] = {"cpus": os.cpu_count(), "starts": starts}
    if args.only in (None, "prepare"):
        result["prepare"] = bench_prepare(args.repeats, work, records)
    if args.only in (None, "explore"):
        result["explore"] = bench_explore(args.repeats, work, args.no_dvc, records)
    if not args.work:
        shutil.rmtree(work)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""explore.parallel = k: batch proposals by UCB with virtual visits, and rounds of k fits that record what a serial
study records (--no-dvc processes, DVC's queue, Dask tasks that clone, run and push)."""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from explore_fakes import BASE_INR, ScriptedAgent, env, make_workspace, node, small_config

from fieldlab.cli import main
from fieldlab.config import ClusterConfig
from fieldlab.explore.agents import Context, RuleAgent
from fieldlab.explore.batch import PoolRunner, stage_outputs, workspace_copy
from fieldlab.explore.driver import Study, run_study
from fieldlab.explore.runners import Job

TIMES = ("started", "finished")
#: which experiment and commit (they name the run, not its result) and the wording of a failure (DVC's or the stage's)
WHERE = ("exp_name", "commit", "error")


def batch(agent: RuleAgent, nodes: list, k: int, first: int) -> list:
    """k proposals of one round, each drawn with the earlier ones pending (as the driver draws them)."""
    props: list = []
    for i in range(first, first + k):
        props.append(agent.propose(Context(1, i, 8, 1.0, nodes, nodes, pending=tuple(props))))
    return props


def test_batch_parents_follow_ucb_with_virtual_visits() -> None:
    """Tree 1 (R2 0.5) -> 2 (0.6), 1 -> 3 (0.55), c = 1: every rule but exploit is off (no R2 >= 0.9, branching
    rate 0.5, three nodes), so each proposal's parent is the highest UCB with the earlier ones as virtual visits.

    No pending: N = 3, ln 3 = 1.0986123: UCB_1 = 0.5 + sqrt(1.0986123 / 3) = 1.1051480,
    UCB_2 = 0.6 + sqrt(1.0986123) = 1.6481471, UCB_3 = 0.55 + 1.0481471 = 1.5981471 -> parent 2.
    Pending child of 2: UCB_3 = 0.55 + sqrt(ln 4) = 1.7274100 > UCB_2 = 0.6 + sqrt(ln 4 / 2) = 1.4325546 -> parent 3.
    Pending children of 2 and 3: UCB_2 = 0.6 + sqrt(ln 5 / 2) = 1.4970613 > UCB_3 = 1.4470613 -> parent 2.
    """
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    cfg = small_config()
    agent = RuleAgent(cfg.explore.ranges, cfg.explore.time_budget_s, seed=0)
    props = batch(agent, nodes, 3, first=4)
    assert [p.parent for p in props] == [2, 3, 2]
    assert all(p.strategy == "exploit" for p in props)
    ok = {n.id for n in nodes if n.r2 is not None}
    assert all(p.parent in ok for p in props)  # each a child the serial tree could have chosen
    configs = [json.dumps(x.params, sort_keys=True) for x in [*props, *nodes]]
    assert len(set(configs)) == len(configs)  # the k differ, and from every config run so far
    serial = agent.propose(Context(1, 4, 8, 1.0, nodes, nodes))
    assert serial == props[0]  # the round's first proposal is the serial study's


def test_one_robustness_test_per_round() -> None:
    """Node 2 reaches R2 0.995 >= 0.99 with three nodes: the round's first proposal re-runs it; the second sees that
    test pending and does not repeat it (once per block, as in a serial study)."""
    nodes = [node(1, None, 0.5), node(2, 1, 0.995, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    cfg = small_config()
    props = batch(RuleAgent(cfg.explore.ranges, cfg.explore.time_budget_s, seed=0), nodes, 2, first=4)
    assert props[0].strategy == "robustness-test" and props[0].parent == 2
    assert props[1].strategy != "robustness-test" and props[1].params != props[0].params


def records(out: Path, drop: tuple[str, ...] = TIMES) -> list[dict]:
    lines = (out / "journal.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def rendered(out: Path) -> dict[str, str]:
    """Every file the study renders from the journal, by name (the pictures aside)."""
    names = ["ucb_scores.txt", "inr_analysis.md", "inr_memory.md"]
    names += sorted(p.relative_to(out).as_posix() for p in (out / "configs").glob("*.yaml"))
    return {name: (out / name).read_text() for name in names}


def fake_r2(params: dict, seed: int) -> float:
    """The fake stage's R2 (explore_fakes.FAKE_STAGE), written out again: the result each fit must report."""
    return (1 - 0.02 * math.log10(params["lr"] / 1e-4) ** 2 - 0.01 * math.log2(params["hidden_features"] / 256) ** 2
            - 1e-5 * (params["omega"] - 30) ** 2 - 0.15 * seed)  # fmt: skip


def check_results(nodes: list, seed: int = 0) -> None:
    """Each node holds its config's R2 (under its own seed), the wide network failed, iteration 4 ran under another
    seed (a repeat)."""
    for n in nodes:
        if n.params["hidden_features"] > 1024:
            assert n.status == "failed" and "fake out of memory" in n.error
        else:
            assert n.r2 == pytest.approx(fake_r2(n.params, seed if n.seed is None else n.seed), abs=1e-12)
    assert all(n.seed is not None and n.seed > seed for n in nodes if n.iteration == 4)


def test_no_dvc_rounds_record_what_a_serial_study_records(tmp_path: Path) -> None:
    """The same scripted proposals, 2 blocks x 5 iterations: serial, then rounds of 2 ([1], [2, 3], [4, 5]) of
    --no-dvc processes in workspace copies; journal (but its timestamps), analysis, memory, ucb_scores.txt and every
    configs/iter_NNN.yaml are the same."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    serial = run_study(small_config(), Study(ws, tmp_path / "serial", 2, 5, use_dvc=False), log=lambda s: None,
                       proposer=ScriptedAgent(5))  # fmt: skip
    rounds = run_study(small_config(parallel=2), Study(ws, tmp_path / "k2", 2, 5, use_dvc=False), log=lambda s: None,
                       proposer=ScriptedAgent(5))  # fmt: skip
    check_results(serial)
    assert records(tmp_path / "k2") == records(tmp_path / "serial")
    assert [n.id for n in rounds] == list(range(1, 11))
    assert rendered(tmp_path / "k2") == rendered(tmp_path / "serial")


def test_pool_runs_the_round_at_once_in_private_copies(tmp_path: Path) -> None:
    """Two fits of a stage that sleeps 1 s: their run intervals overlap, each wrote only into its own copy, and a
    stage output already in the workspace is untouched."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    stage = (ws / "stages" / "inr_block.py").read_text()
    stage = stage.replace("import yaml\n", "import time, yaml\nt0 = time.time(); time.sleep(1.0)\n")
    times = '"t0": t0, "t1": time.time()}'
    stage = stage.replace('"field_name": p["field_name"]}', '"field_name": p["field_name"], ' + times)
    (ws / "stages" / "inr_block.py").write_text(stage)
    (ws / "metrics").mkdir()
    (ws / "metrics" / "inr.json").write_text("{}")  # a former fit's output
    baseline = yaml.safe_load((ws / "params.yaml").read_text())
    runner = PoolRunner(ws, "python stages/inr_block.py", "metrics/inr.json", baseline, "inr_block")
    results = runner.run_many([Job("a", BASE_INR), Job("b", {**BASE_INR, "lr": 2e-4})])
    (a, b) = (r.metrics for r in results)
    assert a["t0"] < b["t1"] and b["t0"] < a["t1"]  # both ran at the same time
    assert a["final_r2"] == pytest.approx(fake_r2(BASE_INR, 0)) and b["final_r2"] == pytest.approx(
        fake_r2({**BASE_INR, "lr": 2e-4}, 0))  # fmt: skip
    assert (ws / "metrics" / "inr.json").read_text() == "{}"


def test_workspace_copy_links_inputs_and_keeps_outputs_private(tmp_path: Path) -> None:
    """dvc.yaml's outs, metrics and plots of the stage are absent from the copy (their folders real), the rest links."""
    ws = tmp_path / "ws"
    for rel in ("data/mpm/t.npz", "artifacts/inr/model.pt", "artifacts/other/x.pt", "plots/a.csv", "src/m.py"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(rel)
    stage = {
        "cmd": "x",
        "outs": ["artifacts/inr/model.pt", {"artifacts/inr/tb": {"persist": True}}],
        "metrics": [{"metrics/inr.json": {"cache": False}}],
        "plots": [{"plots/inr_loss.csv": {"x": "step"}}],
    }
    (ws / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"inr_block": stage}}))
    outputs = stage_outputs(ws, "inr_block", "metrics/inr.json")
    assert outputs == {"artifacts/inr/model.pt", "artifacts/inr/tb", "metrics/inr.json", "plots/inr_loss.csv"}
    copy = workspace_copy(ws, tmp_path / "copy", outputs)
    assert not (copy / "artifacts/inr/model.pt").exists() and (copy / "artifacts/inr").is_dir()
    assert not (copy / "artifacts").is_symlink() and not (copy / "artifacts/inr").is_symlink()
    assert (copy / "artifacts/other").is_symlink() and (copy / "data").is_symlink() and (copy / "src").is_symlink()
    assert (copy / "metrics").is_dir() and not (copy / "metrics").is_symlink()  # not in the workspace yet
    assert (copy / "data/mpm/t.npz").read_text() == "data/mpm/t.npz"


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True, env=env()).stdout


def check_experiments(ws: Path, nodes: list) -> None:
    """Each successful node is an experiment of ws: its ref points at the node's commit, the commit holds the node's
    params, and `dvc exp show` lists it with its R2."""
    refs = dict(line.split()[::-1] for line in git(ws, "for-each-ref", "--format=%(objectname) %(refname)",
                                                          "refs/exps").splitlines())  # fmt: skip
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=ws, capture_output=True, text=True, env=env())
    listed = {rev["name"]: rev["data"] for row in json.loads(shown.stdout) for exp in row.get("experiments") or []
              for rev in exp.get("revs") or []}  # fmt: skip
    for n in (n for n in nodes if n.r2 is not None):
        assert refs[next(r for r in refs if r.endswith("/" + n.exp_name))] == n.commit
        assert yaml.safe_load(git(ws, "show", f"{n.commit}:params.yaml"))["inr"] == n.params
        assert listed[n.exp_name]["params"]["params.yaml"]["data"]["inr"] == n.params
        assert listed[n.exp_name]["metrics"]["metrics/inr.json"]["data"]["final_r2"] == n.r2


def test_dvc_queue_round_records_what_a_serial_study_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 block x 4 iterations with rounds of 2 through `dvc exp run --queue` + `dvc queue start --jobs 2`: every fit a
    git-linked experiment; the journal is the serial --no-dvc study's but for which experiment and commit."""
    monkeypatch.setenv("PATH", env()["PATH"])
    ws = make_workspace(tmp_path / "ws", dvc=True)
    baseline = (ws / "params.yaml").read_text()
    nodes = run_study(small_config(parallel=2), Study(ws, tmp_path / "k2", 1, 4), log=lambda s: None,
                      proposer=ScriptedAgent(4))  # fmt: skip
    plain = make_workspace(tmp_path / "plain", dvc=False)
    run_study(small_config(), Study(plain, tmp_path / "serial", 1, 4, use_dvc=False), log=lambda s: None,
              proposer=ScriptedAgent(4))  # fmt: skip
    assert records(tmp_path / "k2", TIMES + WHERE) == records(tmp_path / "serial", TIMES + WHERE)
    check_results(nodes)
    assert [n.exp_name for n in nodes if n.r2 is not None] == ["b1-i1", "b1-i2", "b1-i4"]
    assert nodes[3].metrics["ssim"] == [0.9, 0.7]  # lists come from the committed metrics file
    check_experiments(ws, nodes)
    assert (ws / "params.yaml").read_text() == baseline


def test_cluster_round_clones_runs_and_pushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cluster.address = a Dask scheduler (a local cluster of 2 worker processes), origin a bare repository: each
    fit clones origin at HEAD, runs `dvc exp run`, pushes; the driver pulls. Same journal as the serial study."""
    from distributed import LocalCluster

    monkeypatch.setenv("PATH", env()["PATH"])
    ws = make_workspace(tmp_path / "ws", dvc=True)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    git(ws, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(ws, "push", "-q", "origin", "HEAD")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        cfg = small_config(parallel=2, cluster=ClusterConfig(address=cluster.scheduler_address))
        start = time.monotonic()
        nodes = run_study(cfg, Study(ws, tmp_path / "k2", 1, 3), log=lambda s: None, proposer=ScriptedAgent(3))
        assert time.monotonic() - start < 120
    plain = make_workspace(tmp_path / "plain", dvc=False)
    run_study(small_config(), Study(plain, tmp_path / "serial", 1, 3, use_dvc=False), log=lambda s: None,
              proposer=ScriptedAgent(3))  # fmt: skip
    assert records(tmp_path / "k2", TIMES + WHERE) == records(tmp_path / "serial", TIMES + WHERE)
    check_results(nodes)
    check_experiments(ws, nodes)
    remote = git(ws, "ls-remote", str(tmp_path / "origin.git"))
    assert all(f"/{n.exp_name}\n" in remote + "\n" for n in nodes if n.r2 is not None)  # pushed to origin
    assert "fake out of memory" in nodes[2].error


def test_cluster_needs_the_commit_on_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit that origin lacks cannot be cloned by the workers: one ConfigError before any fit."""
    from fieldlab.errors import ConfigError
    from fieldlab.explore.remote import ClusterRunner

    monkeypatch.setenv("PATH", env()["PATH"])
    ws = make_workspace(tmp_path / "ws", dvc=True)
    with pytest.raises(ConfigError, match="no git remote 'origin'"):
        ClusterRunner(ws, "inr_block", "metrics/inr.json", (ws / "params.yaml").read_text(), client=None)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    git(ws, "remote", "add", "origin", str(tmp_path / "origin.git"))
    with pytest.raises(ConfigError, match="is not on origin"):
        ClusterRunner(ws, "inr_block", "metrics/inr.json", (ws / "params.yaml").read_text(), client=None)


def test_parallel_zero_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    code = main(["explore", "--params", str(ws / "params.yaml"), "--out", str(tmp_path / "out"),
                 "explore.parallel=0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and "explore.parallel = 0" in err[0]
    assert not (tmp_path / "out" / "journal.jsonl").exists()

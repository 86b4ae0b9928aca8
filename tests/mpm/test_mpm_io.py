"""simulate() on tiny configs, the trajectory files and manifest, the loader's errors, the stage and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fieldlab.cli import main as cli_main
from fieldlab.config import MPMConfig, load_config
from fieldlab.errors import ConfigError, InputError
from fieldlab.mpm import load_trajectory, save_trajectory, simulate
from fieldlab.mpm.scenes import DISC_RADIUS, DISC_X, DISC_Y, discs_3types

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _warp_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDLAB_WARP_CACHE", str(REPO / ".warp_cache"))


def tiny(scene: str = "discs_3types", **kwargs) -> MPMConfig:
    """A few particles, frames and substeps on a 32 grid."""
    cfg = MPMConfig(scene=scene, frames=4, **kwargs)
    sc = replace(cfg.scene_config, n_grid=32, particles=20, substeps=3)
    return replace(cfg, **{scene: sc})


def test_discs_scene_layout() -> None:
    """Nine discs of 1000 particles within radius 0.075 of their centres, three per material, one velocity each."""
    p = discs_3types(1000, max_speed=2.0, seed=7)
    assert p.n == 9000
    assert np.bincount(p.material).tolist() == [3000, 3000, 3000]
    centres = np.array([(x, y) for y in DISC_Y for x in DISC_X])
    for d in range(9):
        pts, vel = p.x[d * 1000 : (d + 1) * 1000], p.v[d * 1000 : (d + 1) * 1000]
        assert np.linalg.norm(pts - centres[d], axis=1).max() <= DISC_RADIUS + 1e-6
        assert len(np.unique(p.material[d * 1000 : (d + 1) * 1000])) == 1
        assert np.unique(vel, axis=0).shape == (1, 2) and np.abs(vel).max() <= 2.0


def test_simulate_shapes_times_and_determinism() -> None:
    cfg = tiny()
    a, b = simulate(cfg, seed=3), simulate(cfg, seed=3)
    T, N = 4, 180
    assert a.x.shape == (T, N, 2) and a.F.shape == (T, N, 2, 2) and a.Jp.shape == (T, N) and a.t.shape == (T,)
    assert all(arr.dtype == np.float32 for arr in (a.x, a.v, a.F, a.Jp, a.S, a.C, a.t))
    np.testing.assert_allclose(a.t, np.arange(T) * 3 * cfg.scene_config.dt, rtol=1e-6)
    assert a.particle_id.tolist() == list(range(N))
    for name, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, getattr(b, name), err_msg=name)
    c = simulate(cfg, seed=4)
    assert not np.array_equal(a.x[0], c.x[0])
    # frame 0 is the initial state: F = I, Jp = 1, S = 0 (no deformation yet)
    np.testing.assert_array_equal(a.F[0], np.broadcast_to(np.eye(2, dtype=np.float32), (N, 2, 2)))
    assert (a.Jp[0] == 1).all() and not a.S[0].any()
    # the discs move: frame 3 differs from frame 0 by about v0 * t
    assert np.abs(a.x[3] - a.x[0]).max() > 0


def test_save_load_roundtrip_and_manifest(tmp_path: Path) -> None:
    traj = simulate(tiny("mpm128"), seed=1)
    out = save_trajectory(traj, tmp_path / "mpm128")
    back = load_trajectory(out)
    for name, arr in traj.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), arr, err_msg=name)
    assert load_trajectory(out / "trajectory.npz").n_frames == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stress_measure"] == "kirchhoff" and manifest["seed"] == 1 and manifest["engine"] == "warp"
    assert manifest["params"]["mpm128"]["n_grid"] == 32 and "warp" in manifest["versions"]
    assert manifest["shapes"]["S"] == [4, 60, 2, 2]


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_trajectory(tmp_path / "nothing")
    bad = tmp_path / "bad" / "trajectory.npz"
    bad.parent.mkdir()
    bad.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="not a readable"):
        load_trajectory(bad.parent)
    traj = simulate(tiny(), seed=0)
    arrays = traj.arrays()
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in arrays.items() if k != "S"})
    with pytest.raises(InputError, match=r"missing array.*S"):
        load_trajectory(tmp_path / "missing.npz")
    np.savez(tmp_path / "dtype.npz", **(arrays | {"F": arrays["F"].astype(np.float64)}))
    with pytest.raises(InputError, match="F has dtype float64"):
        load_trajectory(tmp_path / "dtype.npz")
    np.savez(tmp_path / "shape.npz", **(arrays | {"Jp": arrays["Jp"][:, :5]}))
    with pytest.raises(InputError, match="Jp has shape"):
        load_trajectory(tmp_path / "shape.npz")


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("mpm.scene=volcano", "mpm.scene"),
        ("mpm.discs_3types.dt=0", "mpm.discs_3types.dt"),
        ("mpm.mpm128.dt=-1e-4", "mpm.mpm128.dt"),
        ("mpm.frames=0", "mpm.frames"),
        ("mpm.snow_clamp=[1.01,1.02]", "mpm.snow_clamp"),
        ("mpm.discs_3types.particles=0", "particles"),
    ],
)
def test_bad_config_is_one_line(override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(REPO / "params.yaml", [override])


def test_stage_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The stage writes <root>/<scene>/{trajectory.npz, manifest.json}; bad input exits 2 with one error line."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stage_simulate_mpm", REPO / "stages" / "simulate_mpm.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    small = ["mpm.frames=3", "mpm.discs_3types.particles=10", "mpm.discs_3types.substeps=2", f"mpm.root={tmp_path}"]
    assert stage.main(["--params", str(REPO / "params.yaml"), *small]) == 0
    traj = load_trajectory(tmp_path / "discs_3types")
    assert traj.x.shape == (3, 90, 2)
    assert stage.main(["--params", str(REPO / "params.yaml"), "mpm.scene=volcano"]) == 2
    assert "error: " in capsys.readouterr().err

    out = tmp_path / "cli"
    args = ["simulate-mpm", "--params", str(REPO / "params.yaml"), "--scene", "mpm128", "--frames", "2"]
    args += ["--out", str(out), "--no-progress", "mpm.mpm128.particles=10", "mpm.mpm128.substeps=2"]
    assert cli_main(args) == 0
    assert load_trajectory(out).x.shape == (2, 30, 2)
    assert cli_main(["simulate-mpm", "--params", str(REPO / "params.yaml"), "--frames", "-1"]) == 2

"""The config loader: every malformed params file fails with one line naming the offending dotted key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fieldlab.config import Config, apply_overrides, config_from_dict, load_config, parse_override, to_dict
from fieldlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repo_params_and_smoke_overlay_are_valid() -> None:
    cfg = load_config(REPO / "params.yaml")
    assert isinstance(cfg, Config)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    overlay = yaml.safe_load((REPO / "params.smoke.yaml").read_text()) or {}
    for section, values in overlay.items():
        base.setdefault(section, {}).update(values) if isinstance(values, dict) else base.update({section: values})
    config_from_dict(base, source="params.smoke.yaml")


def test_params_yaml_lists_every_key_of_the_schema() -> None:
    """params.yaml is the full, explicit configuration: every dataclass field appears in it."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    def missing(expected: dict, got: dict, prefix: str) -> list[str]:
        out = []
        for key, value in expected.items():
            dotted = f"{prefix}{key}"
            if key not in got:
                out.append(dotted)
            elif isinstance(value, dict):
                out += missing(value, got[key], dotted + ".")
        return out

    assert missing(to_dict(Config()), raw, "") == []


MALFORMED = {
    "unknown top-level key": ("foo: 1\n", "foo"),
    "unknown section key": ("train:\n  lrr: 0.1\n", "train.lrr"),
    "wrong type string for number": ("train:\n  lr: fast\n", "train.lr"),
    "negative lr": ("train:\n  lr: -0.001\n", "train.lr"),
    "zero epochs": ("train:\n  epochs: 0\n", "train.epochs"),
    "float epochs": ("train:\n  epochs: 2.5\n", "train.epochs"),
    "bool for int": ("seed: true\n", "seed"),
    "negative seed": ("seed: -3\n", "seed"),
    "unknown backbone": ("model:\n  backbone: transformer\n", "model.backbone"),
    "grid of two values": ("data:\n  grid: [96, 48]\n", "data.grid"),
    "grid element not an int": ("data:\n  grid: [96, 48, x]\n", "data.grid[2]"),
    "grid too small": ("data:\n  grid: [96, 48, 2]\n", "data.grid"),
    "section not a mapping": ("train: 5\n", "train"),
    "string for bool": ("data:\n  test_2x: yes please\n", "data.test_2x"),
    "unknown data source": ("data:\n  source: web\n", "data.source"),
    "negative lambda_grad": ("loss:\n  lambda_grad: -0.1\n", "loss.lambda_grad"),
    "unknown INR model": ("inr:\n  model: nerf\n", "inr.model"),
    "unknown MPM scene": ("mpm:\n  scene: sandbox\n", "mpm.scene"),
    "heldout_every of 1 (0 is off, k >= 2 holds frames out)": ("inr:\n  heldout_every: 1\n", "inr.heldout_every"),
    "negative heldout_every": ("inr:\n  heldout_every: -2\n", "inr.heldout_every"),
}


@pytest.mark.parametrize("text,key", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_params_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key} = ")
    assert "expected" in message


@pytest.mark.parametrize("every", [0, 2, 3])
def test_heldout_every_accepts_off_and_every_k_from_2(every: int) -> None:
    assert config_from_dict({"inr": {"heldout_every": every}}).inr.heldout_every == every


def test_heldout_every_of_1_on_the_command_line_is_one_error_line(tmp_path: Path) -> None:
    """``fieldlab config inr.heldout_every=1``: a stride of 1 would hold out every interior frame and fit only the
    first and last; it is neither off (0) nor a stride that leaves frames between the held-out ones (>= 2), so the
    loader refuses it at once, before any fit: exit 2, one ``error:`` line naming the key."""
    write(tmp_path, "inr:\n  model: ngp\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    args = [sys.executable, "-m", "fieldlab", "config", "--params", "params.yaml", "inr.heldout_every=1"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and "inr.heldout_every = 1" in line, line
    assert "expected 0 (off) or a value >= 2" in line, line


MUSCLE_CASES = {
    # (loss section, data section, accepted)
    "other tensor": ({"muscle_sigma": [0.3, 0.3, 1.5, 0, 0, 0]}, {}, False),
    "fibre along y (same eigenvalues)": ({"muscle_sigma": [0.2455, 1.2275, 0.2455, 0, 0, 0]}, {}, True),
    "within muscle_rtol": ({"muscle_sigma": [0.2455, 0.2455, 1.2276, 0, 0, 0]}, {}, True),
    "region tissue ignores it": ({"region": "tissue", "muscle_sigma": [0.3, 0.3, 1.5, 0, 0, 0]}, {}, True),
    "raw corpus ignores it": ({"muscle_sigma": [0.3, 0.3, 1.5, 0, 0, 0]}, {"source": "raw"}, True),
}


@pytest.mark.parametrize(("loss", "data", "accepted"), MUSCLE_CASES.values(), ids=list(MUSCLE_CASES))
def test_loss_muscle_sigma_must_be_the_physics_muscle_tensor(loss: dict, data: dict, accepted: bool) -> None:
    """The loss mask keeps voxels with the eigenvalues of loss.muscle_sigma; a synthetic corpus's muscle carries
    physics.conductivity.muscle = diag(0.2455, 0.2455, 1.2275). A fibre along y, diag(0.2455, 1.2275, 0.2455), is a
    rotation of it (same eigenvalues); 1.2276 differs by 1e-4 < muscle_rtol 1e-3 x 1.2276."""
    raw = {"loss": loss, "data": data}
    if accepted:
        config_from_dict(raw)
        return
    with pytest.raises(ConfigError, match=r"loss\.muscle_sigma = \[0\.3, .*physics\.conductivity\.muscle") as info:
        config_from_dict(raw)
    assert "\n" not in str(info.value)


OOD_CASES = {
    # (physics section, the message, or None when accepted)
    "defaults": ({}, None),
    "ood fat overlaps": ({"ood": {"fat_m": [0.005, 0.008]}}, r"physics\.ood\.fat_m = \[0\.005, 0\.008\] overlaps"),
    "training range widened onto it": ({"source": {"separation_m": [0.005, 0.04]}}, r"physics\.source\.separation_m"),
    "below the training range": ({"ood": {"ellipticity": [0.0, 0.0]}, "phantom": {"ellipticity": [0.05, 0.1]}}, None),
    "touching at an end": ({"ood": {"bone_radius_m": [0.009, 0.012]}}, r"physics\.ood\.bone_radius_m"),
    "ellipticity of 1": ({"ood": {"ellipticity": [0.5, 1.0]}}, r"physics\.ood\.ellipticity.*below 1"),
}


@pytest.mark.parametrize(("physics", "message"), OOD_CASES.values(), ids=list(OOD_CASES))
def test_ood_ranges_must_lie_outside_the_training_ranges(physics: dict, message: str | None) -> None:
    if message is None:
        config_from_dict({"physics": physics})
        return
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict({"physics": physics})
    assert "\n" not in str(info.value)


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(write(tmp_path, "train:\n  lr: [1,\n"))
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "absent.yaml")


def test_defaults_fill_missing_keys(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "train:\n  lr: 0.01\n"))
    assert cfg.train.lr == 0.01
    assert cfg.train.epochs == Config().train.epochs
    assert cfg.data.grid == (96, 48, 48)


def test_int_is_accepted_for_float_and_lists_become_tuples(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "train:\n  lr: 1\ndata:\n  coord_range: [-1, 1]\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.coord_range == (-1.0, 1.0)


@pytest.mark.parametrize(
    "override,path,value",
    [
        ("model.backbone=unet", ["model", "backbone"], "unet"),
        ("train.lr=3e-4", ["train", "lr"], 3e-4),
        ("data.grid=[48,24,24]", ["data", "grid"], [48, 24, 24]),
        ("data.test_2x=false", ["data", "test_2x"], False),
        ("seed=7", ["seed"], 7),
        ("train.lr=1E-5", ["train", "lr"], 1e-5),
        ("data.root=data/other", ["data", "root"], "data/other"),
    ],
)
def test_parse_override_uses_yaml_values(override: str, path: list[str], value: object) -> None:
    assert parse_override(override) == (path, value)


def test_overrides_apply_and_validate(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  backbone: fno\n")
    cfg = load_config(path, ["model.backbone=unet", "train.epochs=3", "data.grid=[48,24,24]"])
    assert (cfg.model.backbone, cfg.train.epochs, cfg.data.grid) == ("unet", 3, (48, 24, 24))
    assert yaml.safe_load(path.read_text()) == {"model": {"backbone": "fno"}}, "the file itself is untouched"
    with pytest.raises(ConfigError, match=r"model\.backbone = 'gru'"):
        load_config(path, ["model.backbone=gru"])


@pytest.mark.parametrize("bad", ["model.backbone", "=unet", "model..backbone=unet", "model.=x"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        parse_override(bad)


def test_override_into_a_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match="seed is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_to_dict_round_trips() -> None:
    cfg = Config()
    assert config_from_dict(to_dict(cfg)) == cfg

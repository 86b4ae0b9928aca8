"""The command line: help without heavy imports, one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fieldlab.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_help_does_not_import_torch() -> None:
    code = "import sys; from fieldlab.cli import main; main([]); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO / "src")}
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_every_registered_command_module_exists() -> None:
    for name, (module, _) in COMMANDS.items():
        path = REPO / "src" / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"command {name}: {path} is missing"


def test_config_command_prints_and_fails_cleanly(tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  lr: 0.5\n")
    assert main(["config", "--params", str(params), "--section", "train"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out
    assert main(["config", "--params", str(params), "train.lr=-2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {params}: train.lr = -2.0: expected a value > 0"

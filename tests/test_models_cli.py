"""``bida models list|info|verify``: installed plane priors, their cards and checksums."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bida_app.cli.main import main as bida_main
from bida_app.models import weights as weights_mod
from bida_app.models.config import UNetConfig
from bida_app.models.unet import UNet
from bida_app.models.weights import save_plane_model, sha256_file


@pytest.fixture()
def weights(tmp_path) -> Path:
    """A weights folder with tiny axial and sagittal models."""
    torch.manual_seed(0)
    root = tmp_path / "weights"
    for plane in ("axial", "sagittal"):
        save_plane_model(UNet(UNetConfig.preset("tiny")), root, plane, training={"steps": 7})
    return root


def test_list_shows_planes_sizes_and_status(weights, capsys):
    assert bida_main(["models", "list", "--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith(("axial", "sagittal"))]
    assert len(lines) == 2 and all(ln.rstrip().endswith("ok") for ln in lines)
    assert sha256_file(weights / "axial.safetensors")[:16] in out
    assert "coronal" not in out


def test_list_json_and_info(weights, capsys):
    assert bida_main(["models", "list", "--weights", str(weights), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert [r["plane"] for r in rows] == ["axial", "sagittal"]
    assert rows[0]["preset"] == "tiny" and rows[0]["steps"] == 7
    assert rows[1]["slice_shape"] == [144, 64]
    assert bida_main(["models", "info", "sagittal", "--weights", str(weights)]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["plane"] == "sagittal" and card["verification"]["status"] == "ok"
    assert card["weights"]["sha256"] == sha256_file(weights / "sagittal.safetensors")


def test_verify_detects_corruption_and_missing_planes(weights, capsys):
    assert bida_main(["models", "verify", "--weights", str(weights)]) == 0
    path = weights / "sagittal.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert bida_main(["models", "verify", "--weights", str(weights)]) == 65
    assert "sagittal" in capsys.readouterr().err
    assert bida_main(["models", "verify", "axial", "--weights", str(weights)]) == 0
    assert bida_main(["models", "verify", "coronal", "--weights", str(weights)]) == 66
    assert bida_main(["models", "verify", "oblique", "--weights", str(weights)]) == 64


def test_no_weights_installed_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights_mod, "DEFAULT_WEIGHTS_DIR", tmp_path / "none")
    assert bida_main(["models", "list"]) == 66
    err = capsys.readouterr().err
    assert "--weights DIR" in err and len(err.strip().splitlines()) == 1
    assert bida_main(["models", "list", "--weights", str(tmp_path / "absent")]) == 66

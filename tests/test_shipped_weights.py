"""The default plane priors that ship inside the package: present, verified, loadable."""

from __future__ import annotations

import json

import numpy as np
import torch

from bida_app.cli.main import main as bida_main
from bida_app.models.weights import (
    DEFAULT_WEIGHTS_DIR,
    default_weights_dir,
    load_plane_model,
    sha256_file,
)

SHIPPED = ("axial", "coronal", "sagittal")


def test_every_plane_ships_with_card_checksum_and_model_card():
    root = default_weights_dir()
    assert root == DEFAULT_WEIGHTS_DIR
    assert (root / "MODEL_CARD.md").is_file()
    for plane in SHIPPED:
        card = json.loads((root / f"{plane}.json").read_text())
        assert card["weights"]["sha256"] == sha256_file(root / card["weights"]["file"])
        assert card["training"]["steps"] > 0 and card["voxel_size_mm"] == 0.2
        assert plane in (root / "MODEL_CARD.md").read_text()


def test_shipped_weights_verify_and_predict_a_finite_velocity(capsys):
    assert bida_main(["models", "verify"]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(SHIPPED)
    for plane in SHIPPED:
        model = load_plane_model(DEFAULT_WEIGHTS_DIR, plane, torch.device("cpu"))
        h, w = model.card["slice_shape"]
        x = torch.zeros(1, 1, h, w)
        with torch.inference_mode():
            v = model.net(x, torch.full((1,), 0.5))
        assert v.shape == x.shape and bool(torch.isfinite(v).all())
        assert model.describe()["Preset"] == "small"  # sidecars name the shipped preset
        assert float(np.abs(v.numpy()).max()) > 0

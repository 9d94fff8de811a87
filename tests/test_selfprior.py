"""``--prior self``: plane priors fitted on the scan's own in-plane slices, then BiDA."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bida_app.cli.main import main as bida_main
from bida_app.demo.dataset import DemoRun, make_demo_dataset
from bida_app.demo.phantom import make_rat_phantom
from bida_app.errors import BidaError
from bida_app.methods.bida import bida_super_resolve_image
from bida_app.methods.selfprior import fit_self_prior, scan_grid, self_prior_models
from bida_app.physics.simulate import simulate_lr


@pytest.fixture(scope="module")
def thick() -> nib.Nifti1Image:
    """A 1 mm coronal-slice phantom scan (A-P through-plane), 0.2 mm in-plane."""
    data = make_rat_phantom((48, 60, 40), seed=3).image.astype(np.float32)
    hr = nib.Nifti1Image(data, np.diag([0.2, 0.2, 0.2, 1.0]))
    return simulate_lr(hr, thickness_mm=1.0, spacing_mm=1.0, axis="AP", profile="gaussian")[0]


def test_self_prior_trains_the_two_planes_holding_the_through_plane_axis(thick):
    models = fit_self_prior(thick, 1, steps=40, progress=False)
    assert sorted(models) == ["axial", "sagittal"]
    grid = scan_grid(thick, 1, factor=4)
    for plane, model in models.items():
        card = model.card
        assert card["prior"] == "self" and card["training"]["steps"] == 40
        assert card["training"]["source_planes"] == ["coronal"]
        # the in-plane slices taught it something: the flow loss went down
        assert card["training"]["final_loss"] < card["training"]["first_loss"]
        slice_axis = 2 if plane == "axial" else 0
        assert card["slice_shape"] == [n for a, n in enumerate(grid) if a != slice_axis]


def test_self_prior_super_resolves_and_keeps_data_consistency(thick):
    res = bida_super_resolve_image(
        thick,
        through_axis=1,
        thickness_mm=1.0,
        target_mm=0.2,
        prior="self",
        self_prior_steps=5,
        steps=2,
        device="cpu",
        progress=False,
    )
    out = np.asarray(res.image.dataobj)
    assert out.shape[1] == 5 * thick.shape[1] and np.isfinite(out).all()
    models = res.sidecar["MethodParameters"]["Models"]
    assert {m["Prior"] for m in models.values()} == {"self"}


def test_self_prior_refuses_isotropic_scans():
    img = nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.diag([0.2, 0.2, 0.2, 1]))
    with pytest.raises(BidaError) as err:
        self_prior_models(img, "self", steps=1, progress=False)
    assert err.value.code == 65 and "thick-slice" in str(err.value)


def test_participant_runs_with_prior_self_and_no_weights(tmp_path):
    runs = (DemoRun("01", None, 1.0, 1.0, ("L", "I", "P"), 1),)
    bids = make_demo_dataset(tmp_path / "bids", shape=(40, 60, 20), runs=runs)
    out = tmp_path / "out"
    code = bida_main(
        [str(bids), str(out), "participant", "--method", "bida", "--prior", "self"]
        + ["--self_prior_steps", "3", "--steps", "2", "--no_n4", "--weights", str(tmp_path)]
    )
    assert code == 0
    sr = out / "sub-01" / "anat" / "sub-01_acq-coronal_desc-bida_T2w.nii.gz"
    meta = json.loads(sr.with_name(sr.name.replace(".nii.gz", ".json")).read_text())
    models = meta["MethodParameters"]["Models"]
    assert sorted(models) == ["axial", "sagittal"]
    assert all(m["Prior"] == "self" and m["Training"]["steps"] == 3 for m in models.values())
    assert np.isfinite(np.asarray(nib.load(sr).dataobj)).all()


def test_bad_input_is_refused_before_the_fit(thick, monkeypatch):
    """A wrong through-plane axis fails at once, not after minutes of training."""
    from bida_app.methods import selfprior

    def no_fit(*_a, **_k):
        raise AssertionError("the self-prior was fitted before the input check")

    monkeypatch.setattr(selfprior, "self_prior_models", no_fit)
    with pytest.raises(BidaError) as err:
        bida_super_resolve_image(
            thick, through_axis=0, thickness_mm=1.0, target_mm=0.2, prior="self", device="cpu"
        )
    assert err.value.code == 65 and "largest voxel spacing" in str(err.value)


def test_finetune_starts_from_the_given_priors_and_keeps_their_record(thick, tmp_path):
    """--prior finetune: same UNet as the given priors, weights moved from theirs by the fit,
    and the cards keep their training record (what the leave-one-out guard reads)."""
    import torch

    from bida_app.models import UNet, UNetConfig
    from bida_app.models.weights import load_plane_models, save_plane_model

    cfg = UNetConfig.preset("tiny")
    for plane in ("axial", "sagittal"):
        torch.manual_seed(0)
        save_plane_model(UNet(cfg), tmp_path, plane, slice_shape=[48, 40])
        card_path = tmp_path / f"{plane}.json"
        card = json.loads(card_path.read_text())
        card["training"] = {"sources": ["seen.nii.gz"], "source_sha256": {"seen.nii.gz": "ab"}}
        card_path.write_text(json.dumps(card))
    base = load_plane_models(tmp_path, ("axial", "sagittal"), "cpu")
    models = self_prior_models(
        thick, "finetune", weights_dir=str(tmp_path), steps=3, progress=False, device="cpu"
    )
    assert sorted(models) == ["axial", "sagittal"]
    for plane, model in models.items():
        assert model.config == cfg and model.card["prior"] == "finetune"
        assert model.card["training"]["source_sha256"] == {"seen.nii.gz": "ab"}
        assert model.card["training"]["steps"] == 3
        assert base[plane].sha256 in model.card["training"]["recipe"]
        assert model.sha256 is None  # not the original's file any more
        before = torch.nn.utils.parameters_to_vector(base[plane].net.parameters())
        after = torch.nn.utils.parameters_to_vector(model.net.parameters())
        change = float((after - before).norm() / before.norm())
        assert 0 < change < 0.1  # started from the given weights, moved a little


def test_unknown_prior_is_refused(thick):
    with pytest.raises(BidaError, match="pretrained, self or finetune"):
        self_prior_models(thick, "imagenet")

"""The preprocessing contract between training and inference, read from the model cards."""

from __future__ import annotations

import nibabel as nib
import pytest
import torch

from bida_app.errors import BidaError
from bida_app.methods.bida import bida_super_resolve_image, clip_contract
from bida_app.models import PLANES, PlaneModel, UNet, UNetConfig

TINY = UNetConfig.preset("tiny")


def _models(lower: float | None, upper: float | None) -> dict[str, PlaneModel]:
    prep = {} if lower is None else {"lower": lower, "upper": upper}
    out = {}
    for plane in PLANES:
        torch.manual_seed(0)
        card = {"training": {"preprocessing": prep}} if prep else {}
        out[plane] = PlaneModel(plane, UNet(TINY).eval(), TINY, card=card)
    return out


def _run(img: nib.Nifti1Image, models: dict) -> dict:
    res = bida_super_resolve_image(
        img, through_axis=1, thickness_mm=1.0, target_mm=0.2, steps=1, device="cpu",
        models=models, progress=False,
    )  # fmt: skip
    return res.sidecar["Standardization"]


def test_inference_clips_at_the_cards_percentiles(thick_rat) -> None:
    default = _run(thick_rat, _models(None, None))
    assert (default["lower"], default["upper"]) == (1.0, 99.0)
    other = _run(thick_rat, _models(5.0, 95.0))
    assert (other["lower"], other["upper"]) == (5.0, 95.0)
    # another contract really changes the input scaling
    assert other["clip_low"] > default["clip_low"] and other["clip_high"] < default["clip_high"]


def test_planes_with_different_contracts_are_refused() -> None:
    a, b = _models(1.0, 99.0), _models(2.0, 98.0)
    with pytest.raises(BidaError, match="different clip percentiles"):
        clip_contract([a["axial"], b["sagittal"]])
    assert clip_contract([a["axial"], a["sagittal"]]) == (1.0, 99.0)

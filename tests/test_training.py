"""``bida train``: slice cache, loss decrease, exact resume, and weights usable by BiDA."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bida_app.cli.main import main as bida_main
from bida_app.cli.train import main as train_main
from bida_app.demo.dataset import DemoRun, make_demo_dataset
from bida_app.training import PrepConfig, TrainConfig, build_slices, find_inputs, train
from bida_app.training import data as data_mod
from bida_app.training.augment import crop_origins, random_affine
from bida_app.training.data import fit_canvas, hr_planes, slices_as, split_validation

SMALL = (40, 60, 20)
GRID = (48, 48, 32)
PREP = PrepConfig(grid=GRID, n4=False)


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    """Two subjects with a 1 mm coronal run and an isotropic 200 µm run each."""
    runs = (
        DemoRun("01", None, 1.0, 1.0, ("R", "A", "S"), 1),
        DemoRun("02", None, 1.0, 1.0, ("L", "I", "P"), 2),
    )
    return make_demo_dataset(tmp_path_factory.mktemp("train") / "bids", shape=SMALL, runs=runs)


def _cfg(**kw) -> TrainConfig:
    base = dict(
        plane="sagittal",
        steps=30,
        preset="tiny",
        batch_size=4,
        lr=2e-3,
        warmup=5,
        val_fraction=0.5,
        val_every=10,
        val_size=16,
        sample_every=0,
        n_grid=2,
        sample_steps=2,
        checkpoint_every=0,
        prep=PREP,
    )
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- data
def test_inputs_are_the_isotropic_runs(bids):
    paths = find_inputs([bids])
    assert [p.name for p in paths] == ["sub-01_acq-iso_T2w.nii.gz", "sub-02_acq-iso_T2w.nii.gz"]


def test_hr_planes_and_cross_plane_orientation():
    assert hr_planes((0, 2)) == ("coronal",)
    vol = np.arange(4 * 5 * 6, dtype=float).reshape(4, 5, 6)
    # coronal slice k = vol[:, k, :]; as a sagittal slice L-R plays A-P, I-S stays I-S
    assert np.array_equal(slices_as(vol, "coronal", "sagittal")[2], vol[:, 2, :])
    # axial slice vol[:, :, k] as sagittal: A-P (shared) becomes the rows
    assert np.array_equal(slices_as(vol, "axial", "sagittal")[3], vol[:, :, 3].T)
    assert fit_canvas(np.ones((1, 3, 9)), (5, 5)).shape == (1, 5, 5)


def test_slice_cache_is_built_once(bids, tmp_path, monkeypatch):
    paths = find_inputs([bids])
    first = build_slices(paths, "axial", PREP, tmp_path, progress=False)
    assert first.shape == (48, 48) and len(first) > 10
    assert len(list((tmp_path / "volumes").glob("*.npy"))) == 2

    def boom(*_a, **_k):
        raise AssertionError("preprocessing ran again")

    monkeypatch.setattr(data_mod, "prepare_volume", boom)
    again = build_slices(paths, "axial", PREP, tmp_path, progress=False)
    assert again.key == first.key and np.array_equal(np.asarray(again.slices), first.slices)
    # another plane reuses the preprocessed volumes
    sag = build_slices(paths, "sagittal", PREP, tmp_path, progress=False)
    assert sag.shape == (48, 32) and sag.key != first.key
    # mostly-empty slices are skipped: every kept slice has foreground
    assert all((np.asarray(s) > -0.9).mean() > 0 for s in sag.slices)


def test_validation_split_holds_out_volumes_or_slice_blocks(bids, tmp_path):
    data = build_slices(find_inputs([bids]), "sagittal", PREP, tmp_path, progress=False)
    train_idx, val_idx, mode = split_validation(data, 0.5)
    assert mode == "volumes" and len(np.unique(data.volume[val_idx])) == 1
    assert not set(data.volume[train_idx]) & set(data.volume[val_idx])
    train_idx, val_idx, mode = split_validation(data, 0.1)
    assert mode == "slices" and len(val_idx) and not set(train_idx) & set(val_idx)


def test_augmentation_rotates_shifts_and_crops():
    gen = torch.Generator().manual_seed(0)
    x = torch.full((4, 1, 32, 32), -1.0)
    x[:, :, 12:20, 12:20] = 1.0
    y = random_affine(x, gen, max_degrees=10, max_shift=5)
    assert y.shape == x.shape and not torch.equal(x, y)
    assert float(y.min()) >= -1.0 - 1e-5 and float(y.max()) <= 1.0 + 1e-5
    assert torch.allclose(random_affine(x, gen, max_degrees=0, max_shift=0), x)
    origins = crop_origins(np.array([[12, 20, 12, 20]] * 4), (16, 16), (32, 32), gen)
    assert ((origins >= 0) & (origins <= 16)).all()


# --------------------------------------------------------------------------- training
def test_loss_decreases(bids, tmp_path):
    res = train([bids], _cfg(), tmp_path / "w", progress=False)
    val = [h["val_loss"] for h in res.history if h.get("val_loss") is not None]
    assert res.step == 30 and len(val) == 4
    assert np.mean(val[-2:]) < 0.6 * val[0]
    # the card, weights, checkpoint, CSV log, loss curve and sample grid are written
    out = tmp_path / "w"
    card = json.loads((out / "sagittal.json").read_text())
    assert card["slice_shape"] == [48, 32] and card["training"]["steps"] == 30
    assert card["training"]["validation"] == "volumes"
    assert (out / "checkpoints" / "sagittal.pt").is_file()
    rows = (out / "logs" / "sagittal.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss") and rows[-1].startswith("30,")
    assert list((out / "samples").glob("sagittal_step*.png"))
    assert (out / "logs" / "sagittal_loss.png").is_file()


def test_resume_reproduces_the_uninterrupted_run(bids, tmp_path):
    cfg = _cfg(steps=8, val_every=2, lr=1e-3, n_grid=0)
    straight = train([bids], cfg, tmp_path / "a", progress=False)
    half = train([bids], cfg, tmp_path / "b", stop_after=4, progress=False)
    assert half.step == 4
    resumed = train([bids], cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == straight.step == 8
    a = torch.load(tmp_path / "a" / "checkpoints" / "sagittal.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "sagittal.pt", weights_only=True)
    for key in ("model",):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert all(torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert torch.equal(a["rng"]["data"], b["rng"]["data"])
    assert [h.get("val_loss") for h in a["history"]] == [h.get("val_loss") for h in b["history"]]
    # the saved weights of both runs are identical (safetensors orders its metadata map
    # arbitrarily, so compare the content, not the bytes)
    from safetensors import safe_open
    from safetensors.torch import load_file

    wa, wb = (load_file(tmp_path / d / "sagittal.safetensors") for d in ("a", "b"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    meta = [safe_open(tmp_path / d / "sagittal.safetensors", "pt").metadata() for d in "ab"]
    assert meta[0] == meta[1]


def test_cli_refuses_to_clobber_and_to_resume_nothing(bids, tmp_path):
    args = [str(bids), "--plane", "axial", "--out", str(tmp_path), "--preset", "tiny"]
    args += ["--grid", "48x48x32", "--no-n4", "--steps", "1", "--batch-size", "2"]
    args += ["--grid-samples", "0", "--val-fraction", "0", "--no-progress"]
    assert train_main([*args, "--resume"]) == 66
    assert train_main(args) == 0
    assert train_main(args) == 64  # a checkpoint exists: --resume or --overwrite
    assert train_main([*args, "--overwrite"]) == 0
    assert train_main([*args, "--plane", "oblique"]) == 64


def test_trained_weights_run_in_the_participant_workflow(bids, tmp_path):
    weights = tmp_path / "weights"
    for plane in ("axial", "sagittal"):
        args = [str(bids), "--plane", plane, "--out", str(weights), "--preset", "tiny"]
        args += ["--grid", "48x48x32", "--no-n4", "--steps", "3", "--batch-size", "2"]
        args += ["--val-every", "3", "--grid-samples", "0", "--no-progress"]
        assert train_main(args) == 0
    out = tmp_path / "out"
    code = bida_main(
        [str(bids), str(out), "participant", "--method", "bida", "--weights", str(weights)]
        + ["--steps", "2", "--no_n4", "--participant_label", "01"]
    )
    assert code == 0
    sr = out / "sub-01" / "anat" / "sub-01_acq-coronal_desc-bida_T2w.nii.gz"
    meta = json.loads(sr.with_name(sr.name.replace(".nii.gz", ".json")).read_text())
    used = meta["MethodParameters"]["Models"]
    for plane in ("axial", "sagittal"):
        card = json.loads((weights / f"{plane}.json").read_text())
        assert used[plane]["SHA256"] == card["weights"]["sha256"]
        assert used[plane]["Training"]["steps"] == 3
    assert meta["ModelGridGeometry"]["PaddedLength"] >= 48
    assert np.isfinite(np.asarray(nib.load(sr).dataobj)).all()


def test_torchrun_ddp_on_cpu_trains_and_writes_once(bids, tmp_path):
    """Two Gloo processes under torchrun: DDP runs, rank 0 alone writes the weights."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "bida_app.cli.main", "train", str(bids), "--plane", "sagittal", "--out"]
    cmd += [str(out), "--preset", "tiny", "--grid", "48x48x32", "--no-n4", "--steps", "4"]
    cmd += ["--batch-size", "2", "--grid-samples", "0", "--val-fraction", "0", "--device", "cpu"]
    cmd += ["--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 1 of 2" in proc.stderr and "rank 0 of 2" in proc.stderr
    card = json.loads((out / "sagittal.json").read_text())
    assert card["training"]["steps"] == 4 and card["training"]["world_size"] == 2
    rows = (out / "logs" / "sagittal.csv").read_text().splitlines()
    assert rows[-1].startswith("4,") and len([r for r in rows if r.startswith("4,")]) == 1

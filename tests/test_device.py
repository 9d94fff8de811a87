"""Device policy (``bida_app.device``): one resolver, ``cuda:N`` kept end to end, CPU counts.

CUDA is mocked (``torch.cuda.is_available`` / ``device_count``); the calls that would touch a
GPU are replaced by spies that record the device they receive and stop the run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import bida_app.device as device_mod
from bida_app.device import (
    amp_dtype,
    available_cpus,
    check_device_spec,
    default_omp_nthreads,
    resolve_device,
)
from bida_app.errors import BidaError, ExitCode


class _Stop(Exception):
    """Raised by spies once they have seen the device."""


@pytest.fixture
def fake_cuda(monkeypatch):
    """Two visible (mocked) CUDA devices."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(device_mod, "_WARNED_FALLBACK", False)


def test_cuda_index_is_kept(fake_cuda):
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("CUDA:0") == torch.device("cuda:0")
    assert resolve_device("auto").type == "cuda"
    assert resolve_device(torch.device("cuda:1")) == torch.device("cuda:1")


def test_cuda_index_beyond_visible_devices_is_usage_error(fake_cuda):
    with pytest.raises(BidaError) as err:
        resolve_device("cuda:2")
    assert err.value.code == ExitCode.USAGE
    assert "2 CUDA device" in str(err.value)


def test_cuda_request_without_cuda_exits_64(no_cuda):
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(BidaError) as err:
            resolve_device(spec)
        assert err.value.code == ExitCode.USAGE
        assert "\n" not in str(err.value)


def test_auto_without_cuda_is_cpu_with_one_warning(no_cuda, caplog):
    with caplog.at_level(logging.WARNING, logger="bida_app.device"):
        assert resolve_device("auto") == torch.device("cpu")
        assert resolve_device("auto") == torch.device("cpu")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "CPU" in warnings[0].getMessage()


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:0", ""])
def test_malformed_spec_is_usage_error(spec):
    with pytest.raises(BidaError) as err:
        check_device_spec(spec)
    assert err.value.code == ExitCode.USAGE


def test_amp_policy():
    assert amp_dtype(torch.device("cuda:1")) == torch.bfloat16
    assert amp_dtype(torch.device("cpu")) is None
    assert amp_dtype(torch.device("cpu"), "float16") == torch.float16
    with pytest.raises(ValueError):
        amp_dtype(torch.device("cpu"), "int8")


def test_available_cpus_respects_cgroup_v2_quota(tmp_path: Path):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # one CPU's worth of quota
    assert available_cpus(tmp_path) == 1


def test_available_cpus_respects_cgroup_v1_quota(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert available_cpus(tmp_path) == 16


def test_available_cpus_follows_affinity(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 3, 5})
    assert available_cpus(tmp_path) == 3  # no cgroup files: the affinity mask


def test_default_omp_nthreads():
    assert [default_omp_nthreads(n) for n in (1, 2, 8, 64)] == [1, 2, 8, 8]


def test_participant_defaults_use_the_machine(monkeypatch, tmp_path):
    """No --nprocs/--omp_nthreads: serial workflows, min(8, available CPUs) threads each."""
    import bida_app.cli.participant as participant
    from bida_app.cli.main import main

    seen = {}

    def fake_run(cfg):
        seen["cfg"] = cfg
        return 0

    monkeypatch.setattr(participant, "run_participant", fake_run)
    monkeypatch.setattr(participant, "runtime_env", lambda _work: None)
    monkeypatch.setattr(device_mod, "available_cpus", lambda *a: 12)
    bids = tmp_path / "bids"
    bids.mkdir()
    assert main([str(bids), str(tmp_path / "out"), "participant"]) == 0
    assert (seen["cfg"].nprocs, seen["cfg"].omp_nthreads) == (1, 8)
    args = [str(bids), str(tmp_path / "out"), "participant", "--nprocs", "3"]
    assert main([*args, "--device", "cuda:1"]) == 0
    assert (seen["cfg"].nprocs, seen["cfg"].omp_nthreads) == (3, 3)
    assert seen["cfg"].device == "cuda:1"


def test_participant_rejects_bad_device(tmp_path):
    from bida_app.cli.main import main

    with pytest.raises(SystemExit) as err:
        main([str(tmp_path), str(tmp_path / "out"), "participant", "--device", "gpu"])
    assert err.value.code == ExitCode.USAGE


# ---- cuda:N reaches every torch call ---------------------------------------------------


def _thick_image() -> nib.Nifti1Image:
    data = np.random.default_rng(0).random((16, 6, 16)).astype(np.float32)
    return nib.Nifti1Image(data, np.diag([0.2, 1.0, 0.2, 1.0]))


def _on_cuda_1(mbida, **kwargs):
    """BiDA on the thick test image with ``device="cuda:1"``."""
    return mbida.bida_super_resolve_image(
        _thick_image(), through_axis=1, thickness_mm=1.0, target_mm=0.2, device="cuda:1", **kwargs
    )


def test_bida_image_passes_cuda_index_to_prior_fit_models_and_sampler(fake_cuda, monkeypatch):
    import bida_app.diffusion.bida as dbida
    import bida_app.methods.bida as mbida
    import bida_app.methods.selfprior as selfprior

    seen: dict[str, object] = {}

    def fake_fit(img, prior, *, weights_dir, steps, device, seed, progress):
        seen["fit"] = device
        return {}

    def fake_models(weights_dir, planes, device):
        seen["load"] = device
        raise _Stop

    monkeypatch.setattr(selfprior, "self_prior_models", fake_fit)
    monkeypatch.setattr(mbida, "get_plane_models", fake_models)
    with pytest.raises(_Stop):
        _on_cuda_1(mbida, prior="self")
    assert seen == {"fit": torch.device("cuda:1"), "load": torch.device("cuda:1")}

    def fake_sr(*args, device, **kwargs):
        seen["sampler"] = device
        raise _Stop

    from bida_app.models import PlaneModel, UNet, UNetConfig

    cfg = UNetConfig.preset("tiny")
    models = {p: PlaneModel(p, UNet(cfg).eval(), cfg) for p in ("axial", "sagittal")}
    monkeypatch.setattr(dbida, "super_resolve", fake_sr)
    with pytest.raises(_Stop):
        _on_cuda_1(mbida, models=models)
    assert seen["sampler"] == torch.device("cuda:1")


def test_sampler_moves_the_network_to_the_requested_cuda_index(fake_cuda, monkeypatch):
    from bida_app.diffusion.bida import super_resolve
    from bida_app.models import PlaneModel, UNet, UNetConfig
    from bida_app.physics import SliceOperator, make_profile

    moved: list[object] = []

    class SpyUNet(UNet):
        def to(self, *args, **kwargs):
            moved.append(kwargs.get("device", args[0] if args else None))
            raise _Stop

    cfg = UNetConfig.preset("tiny")
    models = {p: PlaneModel(p, SpyUNet(cfg).eval(), cfg) for p in ("axial", "sagittal")}
    op = SliceOperator(20, np.arange(4) * 5 + 2.0, 0.2, make_profile("gaussian", 1.0), 1)
    lr = np.zeros((8, 4, 8), np.float32)
    with pytest.raises(_Stop):
        super_resolve(lr, op, models, steps=1, device="cuda:1", progress=False)
    assert moved == [torch.device("cuda:1")]


def test_evaluate_cli_resolves_device_once_and_keeps_index(fake_cuda, monkeypatch, tmp_path):
    import bida_app.evaluation.harness as harness
    from bida_app.cli.evaluate import main

    seen = {}

    def fake_run(inputs, out_dir, settings, progress=True):
        seen["device"] = settings.device
        raise _Stop

    monkeypatch.setattr(harness, "run_evaluation", fake_run)
    vol = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), vol)
    with pytest.raises(_Stop):
        main([str(vol), str(tmp_path / "eval"), "--device", "cuda:1"])
    assert seen["device"] == "cuda:1"
    from bida_app.evaluation.runners import _gpu_id  # ECLARE's --gpu-id

    assert _gpu_id("cuda:1") == 1


def test_sidecar_records_the_cpu_budget():
    from bida_app.bids.sidecar import build_sidecar
    from bida_app.cli.participant import recorded_options
    from bida_app.config import RunConfig

    cfg = RunConfig(bids_dir="b", output_dir="o", analysis_level="participant")
    cfg.nprocs, cfg.omp_nthreads, cfg.device = 6, 3, "cuda:1"
    run = {"relpath": "sub-01/anat/sub-01_T2w.nii.gz", "zooms": [0.2, 1.0, 0.2]}
    meta = build_sidecar(run, [], recorded_options(cfg))
    assert meta["Options"]["nprocs"] == 6
    assert meta["Options"]["omp_nthreads"] == 3
    assert meta["Options"]["device"] == "cuda:1"

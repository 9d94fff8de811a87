"""UNet configuration, architecture and weights on disk."""

from __future__ import annotations

import json

import pytest
import torch

from bida_app.errors import BidaError, ExitCode
from bida_app.models import (
    PRESETS,
    UNet,
    UNetConfig,
    load_plane_model,
    load_plane_models,
    plane_slice_shape,
    save_plane_model,
    sha256_file,
    verify_plane_model,
)


def _randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter (zero-initialised layers included) like a trained net."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


def test_config_round_trip_and_validation():
    for cfg in PRESETS.values():
        assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert UNetConfig() == PRESETS["default"]
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(base_channels=10, groups=4)
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channel_mult=(1, 2), attention_levels=(2,))
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="unknown UNet preset"):
        UNetConfig.preset("huge")


def test_preset_sizes():
    tiny = UNet(UNetConfig.preset("tiny"))
    default = UNet(UNetConfig.preset("default"))
    assert tiny.n_params < 100_000
    # the default must fit the shipping budget (<= 8M parameters, bf16 <= 16 MiB)
    assert 2_000_000 < default.n_params <= 8_000_000


@pytest.mark.parametrize("hw", [(16, 8), (8, 24), (12, 4)])
def test_unet_any_multiple_of_factor(hw):
    net = _randomize(UNet(UNetConfig.preset("tiny")))
    x = torch.randn(3, 1, *hw)
    with torch.no_grad():
        out = net(x, torch.tensor([0.1, 0.5, 0.9]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_rejects_bad_size_and_uses_time():
    net = _randomize(UNet(UNetConfig.preset("tiny")))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.zeros(1, 1, 10, 8), torch.zeros(1))
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        a, b = net(x, torch.tensor([0.1])), net(x, torch.tensor([0.8]))
    assert (a - b).abs().max() > 1e-4


def test_unet_is_fully_convolutional_per_sample():
    """Batch elements do not interact (GroupNorm, not BatchNorm)."""
    net = _randomize(UNet(UNetConfig.preset("tiny")))
    x = torch.randn(4, 1, 8, 12)
    t = torch.rand(4)
    with torch.no_grad():
        together = net(x, t)
        alone = torch.cat([net(x[i : i + 1], t[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_weights_round_trip(tmp_path):
    net = _randomize(UNet(UNetConfig.preset("tiny")))
    card_path = save_plane_model(
        net, tmp_path, "sagittal", training={"volumes": 3, "steps": 10}, extra={"note": "x"}
    )
    card = json.loads(card_path.read_text())
    assert card["plane"] == "sagittal"
    assert card["slice_shape"] == list(plane_slice_shape("sagittal")) == [144, 64]
    assert card["voxel_size_mm"] == 0.2
    assert card["intensity"] == "[-1,1] p1/p99"
    assert card["parameterization"] == "flow"
    assert card["n_params"] == net.n_params
    assert card["training"] == {"volumes": 3, "steps": 10}
    assert card["weights"]["sha256"] == sha256_file(tmp_path / "sagittal.safetensors")

    pm = load_plane_model(tmp_path, "sagittal")
    assert pm.plane == "sagittal" and pm.factor == 4 and pm.sha256 == card["weights"]["sha256"]
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.6])
    with torch.no_grad():
        torch.testing.assert_close(pm.net(x, t), net(x, t))


def test_bf16_storage_halves_file(tmp_path):
    net = _randomize(UNet(UNetConfig.preset("tiny")))
    save_plane_model(net, tmp_path / "f32", "axial")
    save_plane_model(net, tmp_path / "bf16", "axial", dtype=torch.bfloat16)
    f32 = (tmp_path / "f32" / "axial.safetensors").stat().st_size
    bf16 = (tmp_path / "bf16" / "axial.safetensors").stat().st_size
    assert bf16 < 0.6 * f32
    pm = load_plane_model(tmp_path / "bf16", "axial")
    assert next(pm.net.parameters()).dtype == torch.float32


def test_checksum_mismatch_is_bad_data(tmp_path):
    save_plane_model(UNet(UNetConfig.preset("tiny")), tmp_path, "axial")
    weights = tmp_path / "axial.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BidaError, match="axial.safetensors") as err:
        load_plane_models(tmp_path, ["axial"])
    assert err.value.code == ExitCode.BAD_DATA
    assert "checksum" in str(err.value)


def test_missing_weights_are_missing_input(tmp_path):
    save_plane_model(UNet(UNetConfig.preset("tiny")), tmp_path, "axial")
    with pytest.raises(BidaError, match="coronal") as err:
        load_plane_models(tmp_path, ["axial", "coronal"])
    assert err.value.code == ExitCode.MISSING_INPUT
    (tmp_path / "axial.safetensors").unlink()
    with pytest.raises(BidaError, match="axial.safetensors") as err:
        verify_plane_model(tmp_path, "axial")
    assert err.value.code == ExitCode.MISSING_INPUT


def test_card_for_other_plane_or_garbage_is_bad_data(tmp_path):
    save_plane_model(UNet(UNetConfig.preset("tiny")), tmp_path, "axial")
    # an axial card copied under the coronal name
    (tmp_path / "coronal.json").write_text((tmp_path / "axial.json").read_text())
    with pytest.raises(BidaError, match="not 'coronal'") as err:
        load_plane_model(tmp_path, "coronal")
    assert err.value.code == ExitCode.BAD_DATA
    (tmp_path / "axial.json").write_text("{not json")
    with pytest.raises(BidaError, match="unreadable") as err:
        load_plane_model(tmp_path, "axial")
    assert err.value.code == ExitCode.BAD_DATA


def test_weights_of_another_architecture_are_bad_data(tmp_path):
    save_plane_model(UNet(UNetConfig.preset("tiny")), tmp_path, "axial")
    card = json.loads((tmp_path / "axial.json").read_text())
    card["unet"]["base_channels"] = 16
    (tmp_path / "axial.json").write_text(json.dumps(card))
    with pytest.raises(BidaError, match="do not fit their card") as err:
        load_plane_model(tmp_path, "axial")
    assert err.value.code == ExitCode.BAD_DATA


def test_plane_model_describe(tmp_path):
    save_plane_model(UNet(UNetConfig.preset("tiny")), tmp_path, "coronal", voxel_size_mm=0.15)
    pm = load_plane_model(tmp_path, "coronal")
    info = pm.describe()
    assert info["Plane"] == "coronal" and info["Preset"] == "tiny"
    assert info["SHA256"] == sha256_file(tmp_path / "coronal.safetensors")
    assert pm.voxel_size_mm == info["VoxelSize"] == 0.15

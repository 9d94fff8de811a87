"""Skull-strip port: PyTorch graph vs an independent NumPy forward pass of the Keras HDF5
weights, safetensors round trip, patch tiling, resampling and fusion rules.

The helpers at the top (NumPy reference, tiny synthetic Keras file, access to the fetched
networks) are also used by ``test_skullstrip_real.py``. Tests that need a published network
fail with instructions when it is not installed; they skip only when
``BIDA_ALLOW_MISSING_SKULLSTRIP=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from bida_app.errors import BidaError
from bida_app.evaluation.skullstrip import (
    RECIPES,
    SkullStripper,
    default_weight_dirs,
    largest_connected_component,
    patch_counts,
    patch_passes,
    resample_linear,
    resample_nearest_back,
    sha256_file,
)

ALLOW_MISSING = "BIDA_ALLOW_MISSING_SKULLSTRIP"


def numpy_forward(model_config: dict[str, Any], h5_path: Path, x: np.ndarray) -> np.ndarray:
    """Run a Keras functional model in float64 NumPy, NHWC, straight from the HDF5 arrays."""
    with h5py.File(h5_path, "r") as fh:
        group = fh["model_weights"]
        weights = {}
        for raw in group.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            names = [
                n.decode() if isinstance(n, bytes) else str(n)
                for n in group[name].attrs["weight_names"]
            ]
            weights[name] = [np.asarray(group[name][n], dtype=np.float64) for n in names]
    acts = {
        "relu": lambda v: np.maximum(v, 0.0),
        "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
        "linear": lambda v: v,
    }
    values: dict[str, np.ndarray] = {}
    for layer in model_config["config"]["layers"]:
        name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
        ins = [values[node[0]] for node in (layer["inbound_nodes"] or [[]])[0]]
        if kind == "InputLayer":
            out = np.asarray(x, dtype=np.float64)
        elif kind == "Conv2D":
            kernel, bias = weights[name]
            out = acts[cfg["activation"]](_conv_same(ins[0], kernel) + bias)
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = weights[name]
            out = gamma * (ins[0] - mean) / np.sqrt(var + cfg["epsilon"]) + beta
        elif kind == "MaxPooling2D":
            b, h, w, c = ins[0].shape
            out = ins[0].reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        elif kind == "UpSampling2D":
            out = ins[0].repeat(2, axis=1).repeat(2, axis=2)
        elif kind == "Concatenate":
            out = np.concatenate(ins, axis=-1)
        elif kind == "Dropout":
            out = ins[0]
        else:
            raise AssertionError(f"reference does not implement {kind}")
        values[name] = out
    return values[model_config["config"]["output_layers"][0][0]]


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """TensorFlow 'same' convolution (stride 1), kernel HWIO; extra padding bottom/right."""
    kh, kw = kernel.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[3]))
    for dy in range(kh):
        for dx in range(kw):
            out += np.tensordot(xp[:, dy : dy + h, dx : dx + w, :], kernel[dy, dx], axes=1)
    return out


def tiny_keras_file(path: Path, seed: int = 0) -> dict[str, Any]:
    """Write a small U-Net-shaped Keras 2 HDF5 file (random weights); return its config."""
    rng = np.random.default_rng(seed)

    def layer(kind: str, name: str, inbound: list[str], **cfg: Any) -> dict[str, Any]:
        nodes = [[[n, 0, 0, {}] for n in inbound]] if inbound else []
        return {
            "class_name": kind,
            "name": name,
            "config": {"name": name, **cfg},
            "inbound_nodes": nodes,
        }

    conv = dict(
        strides=[1, 1],
        padding="same",
        data_format="channels_last",
        dilation_rate=[1, 1],
        use_bias=True,
    )
    bn = dict(axis=[3], momentum=0.99, epsilon=1e-3, center=True, scale=True)
    layers = [
        layer("InputLayer", "input_1", [], batch_input_shape=[None, 16, 16, 1]),
        layer(
            "Conv2D", "c1", ["input_1"], filters=4, kernel_size=[3, 3], activation="relu", **conv
        ),
        layer("BatchNormalization", "c1_bn", ["c1"], **bn),
        layer(
            "MaxPooling2D",
            "p1",
            ["c1_bn"],
            pool_size=[2, 2],
            strides=[2, 2],
            padding="valid",
            data_format="channels_last",
        ),
        layer("Conv2D", "c2", ["p1"], filters=6, kernel_size=[3, 3], activation="relu", **conv),
        layer("BatchNormalization", "c2_bn", ["c2"], **bn),
        layer(
            "UpSampling2D",
            "u",
            ["c2_bn"],
            size=[2, 2],
            data_format="channels_last",
            interpolation="nearest",
        ),
        layer("Conv2D", "u_conv", ["u"], filters=4, kernel_size=[2, 2], activation="relu", **conv),
        layer("Concatenate", "m", ["c1_bn", "u_conv"], axis=-1),
        layer("Dropout", "d", ["m"], rate=0.5),
        layer(
            "Conv2D", "score", ["d"], filters=1, kernel_size=[1, 1], activation="sigmoid", **conv
        ),
    ]
    config = {
        "class_name": "Model",
        "config": {
            "name": "tiny",
            "layers": layers,
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["score", 0, 0]],
        },
    }
    shapes = {
        "c1": (3, 3, 1, 4),
        "c2": (3, 3, 4, 6),
        "u_conv": (2, 2, 6, 4),
        "score": (1, 1, 8, 1),
    }
    with h5py.File(path, "w") as fh:
        fh.attrs["model_config"] = json.dumps(config)
        fh.attrs["keras_version"] = "2.2.4"
        group = fh.create_group("model_weights")
        group.attrs["layer_names"] = [lyr["name"].encode() for lyr in layers]
        for lyr in layers:
            name, sub = lyr["name"], group.create_group(lyr["name"])
            arrays: dict[str, np.ndarray] = {}
            if name in shapes:
                arrays = {
                    "kernel:0": rng.normal(0, 0.5, shapes[name]),
                    "bias:0": rng.normal(0, 0.1, shapes[name][-1]),
                }
            elif name.endswith("_bn"):
                c = 4 if name == "c1_bn" else 6
                arrays = {
                    "gamma:0": rng.uniform(0.5, 1.5, c),
                    "beta:0": rng.normal(0, 0.2, c),
                    "moving_mean:0": rng.normal(0, 0.3, c),
                    "moving_variance:0": rng.uniform(0.2, 2.0, c),
                }
            sub.attrs["weight_names"] = [f"{name}/{k}".encode() for k in arrays]
            for k, v in arrays.items():
                sub.create_dataset(f"{name}/{k}", data=v.astype(np.float32))
    return config


def fetched_dir(species: str) -> Path:
    """Directory of a species' converted network; fail (or skip only when allowed) if absent."""
    for d in default_weight_dirs(species):
        if (d / "model.json").is_file():
            return d
    msg = (
        f"the {species} skull-strip network is not installed (looked in "
        f"{', '.join(map(str, default_weight_dirs(species)))}). Fetch it once with "
        f"'bida models fetch-skullstrip --species {species}' (or 'python -m "
        f"bida_app.evaluation.fetch --species {species}'); set {ALLOW_MISSING}=1 to skip."
    )
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(msg)
    pytest.fail(msg)


def load_stripper(species: str) -> SkullStripper:
    """The converted network (checksum verified)."""
    d = fetched_dir(species)
    try:
        return SkullStripper.from_safetensors(d / "model.safetensors", d / "model.json")
    except BidaError as exc:  # a corrupt install is a failure, never a skip
        pytest.fail(str(exc))


def source_hdf5(species: str) -> Path:
    """The original Keras file kept beside the converted network."""
    path = fetched_dir(species) / "source.hdf5"
    if not path.is_file():
        pytest.fail(
            f"{path} missing: run 'bida models fetch-skullstrip --species {species} "
            "--force' (without --no-keep-source)"
        )
    return path


# ----------------------------------------------------------------------------- tests


def _smooth_input(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    """Fixed random blobs in [0, 1] (NHWC): less saturating than white noise."""
    from scipy import ndimage

    img = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 3.0)
    img = (img - img.min()) / (img.max() - img.min())
    return img[None, :, :, None]


def _torch_forward(config: dict[str, Any], h5: Path, x_nhwc: np.ndarray) -> np.ndarray:
    """The port in float64 (the graph and weight layouts, free of float32 rounding)."""
    import torch

    from bida_app.evaluation.keras_port import KerasGraph

    net = KerasGraph(config)
    net.load_hdf5_weights(h5)
    net = net.eval().double()
    with torch.inference_mode():
        return net(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)).double()).numpy()[:, 0]


def _linear_score(config: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``config`` with the output layer's activation removed (logits)."""
    out = json.loads(json.dumps(config))
    last = out["config"]["output_layers"][0][0]
    for lyr in out["config"]["layers"]:
        if lyr["name"] == last:
            lyr["config"]["activation"] = "linear"
    return out


def test_port_matches_numpy_on_synthetic_keras_file(tmp_path: Path) -> None:
    """Layouts, even-kernel 'same' padding, BN, pooling, upsampling and concat agree."""
    h5 = tmp_path / "tiny.hdf5"
    config = tiny_keras_file(h5)
    x = _smooth_input((16, 16))
    for cfg in (config, _linear_score(config)):
        ref = numpy_forward(cfg, h5, x)[..., 0]
        got = _torch_forward(cfg, h5, x)
        assert got.shape == ref.shape == (1, 16, 16)
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    # a wrong kernel layout would not pass: transposing H and W changes the result
    from bida_app.evaluation.keras_port import KerasGraph

    net = KerasGraph(_linear_score(config))
    net.load_hdf5_weights(h5)
    net.layers["c1"].weight.data = net.layers["c1"].weight.data.transpose(2, 3)
    import torch

    with torch.inference_mode():
        wrong = net(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()[:, 0]
    assert np.abs(wrong - numpy_forward(_linear_score(config), h5, x)[..., 0]).max() > 1e-3


@pytest.mark.parametrize("species", ["mouse", "rat"])
def test_port_matches_numpy_on_published_weights(species: str) -> None:
    """The real networks: PyTorch port vs NumPy forward of the HDF5 weights, to 1e-4.

    The float64 port must match the float64 reference; the float32 inference path
    (``SkullStripper.probabilities``, what ``predict_mask`` runs) differs only by float32
    rounding (about 2e-5 of the logit range) and takes the same decisions.
    """
    from bida_app.evaluation.keras_port import read_model_config

    h5 = source_hdf5(species)
    config = read_model_config(h5)
    x = _smooth_input((128, 128))
    probs_ref = numpy_forward(config, h5, x)[..., 0]
    assert np.abs(_torch_forward(config, h5, x) - probs_ref).max() <= 1e-4
    logits_cfg = _linear_score(config)
    logits_ref = numpy_forward(logits_cfg, h5, x)[..., 0]
    scale = max(1.0, float(np.abs(logits_ref).max()))
    assert np.abs(_torch_forward(logits_cfg, h5, x) - logits_ref).max() <= 1e-4 * scale

    converted = load_stripper(species)  # float32, channels-last: the production path
    probs32 = converted.probabilities(x[..., 0].astype(np.float32))
    assert np.abs(probs32 - probs_ref).max() <= 2e-3
    threshold = RECIPES[species].threshold
    decided = np.abs(probs_ref - threshold) > 2e-3
    assert np.array_equal((probs32 > threshold)[decided], (probs_ref > threshold)[decided])


def test_safetensors_round_trip_and_checksum(tmp_path: Path) -> None:
    h5 = tmp_path / "tiny.hdf5"
    tiny_keras_file(h5)
    ported = SkullStripper.from_hdf5(h5, "rat")
    card = ported.save_safetensors(tmp_path / "out")
    again = SkullStripper.from_safetensors(tmp_path / "out" / "model.safetensors", card)
    x = _smooth_input((16, 16))[..., 0].astype(np.float32)
    assert np.array_equal(ported.probabilities(x), again.probabilities(x))
    assert again.species == "rat"
    assert json.loads(card.read_text())["source"]["sha256"] == sha256_file(h5)
    weights = tmp_path / "out" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(BidaError, match="SHA-256"):
        SkullStripper.from_safetensors(weights, card)


def test_load_reports_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIDA_SKULLSTRIP_DIR", str(tmp_path))
    with pytest.raises(BidaError, match="fetch-skullstrip --species rat") as err:
        SkullStripper.load("rat", tmp_path / "nowhere")
    assert err.value.code == 66


def _coverage(shape: tuple[int, int], species: str) -> np.ndarray:
    cover = np.zeros(shape)
    for (r, c), m in patch_counts(shape, RECIPES[species]).items():
        assert 0 <= r <= shape[0] - 128 and 0 <= c <= shape[1] - 128
        cover[r : r + 128, c : c + 128] += m
    return cover


def test_patch_tiling() -> None:
    """Mouse recipe (edge patches) covers every pixel; the rat recipe (rbm) covers all when
    the stride divides the margin and leaves two opposite corners uncovered otherwise."""
    for shape in ((145, 168), (128, 300), (361, 129)):
        assert _coverage(shape, "mouse").min() >= 1
    assert _coverage((288, 224), "rat").min() == 2  # both passes cover every pixel
    gaps = _coverage((200, 207), "rat") == 0
    assert 0 < gaps.mean() < 0.01
    assert gaps[0, -1] and gaps[-1, 0] and not gaps[0, 0] and not gaps[-1, -1]
    with pytest.raises(ValueError, match="shorter"):
        patch_passes(100, 128, 32, False)


def test_resample_linear_and_back() -> None:
    rng = np.random.default_rng(0)
    data = rng.random((9, 7, 5))
    up = resample_linear(data, (0.2, 0.2, 1.0), (0.1, 0.1, 1.0))
    assert up.shape == (18, 14, 5)
    assert np.allclose(up[::2, ::2], data)  # even samples hit the old voxel centres
    assert np.allclose(up[1:-1:2, 0], (data[:-1, 0] + data[1:, 0]) / 2)
    assert np.all(up[-1] == 0)  # beyond half a voxel past the edge: 0, as in SimpleITK
    labels = (up > 0.5).astype(np.uint8)
    back = resample_nearest_back(labels, (0.2, 0.2, 1.0), (0.1, 0.1, 1.0), data.shape)
    assert np.array_equal(back, (data > 0.5).astype(np.uint8))


def test_segment_slices_fusion_rules() -> None:
    """Vote (rbm) and mean (seg-for-4modalities) fusion on a fake network."""

    class Fake(SkullStripper):
        def __init__(self) -> None:  # no network: patch output = patch intensity
            self.batch_size = 4

        def probabilities(self, patches: np.ndarray) -> np.ndarray:
            return patches.astype(np.float32)

    img = np.full((1, 160, 160), 0.4, np.float32)
    labels_mean, lik = Fake().segment_slices(img, RECIPES["mouse"], progress=False)
    assert np.allclose(lik, 0.4) and labels_mean.all()  # 0.4 > 0.3
    labels_vote, _ = Fake().segment_slices(img, RECIPES["rat"], progress=False)
    assert not labels_vote.any()  # 0.4 < 0.5 in every patch
    small = np.full((2, 100, 140), 0.6, np.float32)  # padded up to the patch size
    labels, lik = Fake().segment_slices(small, RECIPES["rat"], progress=False)
    assert labels.shape == small.shape and labels.all()


def test_largest_component() -> None:
    m = np.zeros((6, 6, 6), np.uint8)
    m[:2, :2, :2] = 1
    m[3:, 3:, 3:] = 1
    out = largest_connected_component(m)
    assert out.sum() == 27 and out[5, 5, 5] == 1 and out[0, 0, 0] == 0

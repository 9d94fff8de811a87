"""Run a Keras functional 2D CNN in PyTorch: graph from ``model_config``, weights from HDF5.

A Keras HDF5 model file holds the network as JSON (the ``model_config`` attribute: a list of
layers, each with its ``class_name``, ``config`` and the names of the layers feeding it) and
the weights under ``model_weights/<layer>/...`` in the order the layer's ``weight_names``
attribute lists. :class:`KerasGraph` rebuilds that graph with ``torch.nn`` modules, so no
TensorFlow is needed at run time.

Layout conversions (Keras ``channels_last`` to PyTorch NCHW):

* Conv2D kernels are stored HWIO; PyTorch wants OIHW (``kernel.transpose(3, 2, 0, 1)``).
* ``padding="same"`` with an even kernel pads TensorFlow-style: the extra row/column goes
  at the bottom/right (``total // 2`` before, the rest after).
* BatchNormalization in inference uses the moving statistics with the stored epsilon
  (momentum only matters in training and is ignored).
* Concatenate / BatchNormalization axes refer to NHWC and are mapped to NCHW.
* Dropout is the identity at inference.

Supported layers: InputLayer, Conv2D, BatchNormalization, Activation, MaxPooling2D,
UpSampling2D (nearest), Concatenate, Add, Dropout. Anything else raises
``NotImplementedError`` naming the layer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOGGER = logging.getLogger(__name__)

_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu")


def _apply_activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "softmax":
        return torch.softmax(x, dim=1)
    if name == "elu":
        return F.elu(x)
    return x


def _pair(value: Any) -> tuple[int, int]:
    """Keras sizes are ints or 2-lists; return a 2-tuple."""
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def _activation(name: str, layer: str) -> str:
    if name not in _ACTIVATIONS:
        raise NotImplementedError(f"layer {layer!r}: activation {name!r} is not supported")
    return name


def _nchw_axis(axis: Any, layer: str) -> int:
    """Map a Keras NHWC axis (``-1``, ``3``, ``[3]``) to the NCHW tensor dimension."""
    if isinstance(axis, list):
        if len(axis) != 1:
            raise NotImplementedError(f"layer {layer!r}: multi-axis {axis} not supported")
        axis = axis[0]
    axis = int(axis) % 4
    return {0: 0, 1: 2, 2: 3, 3: 1}[axis]


def same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, ...]:
    """``F.pad`` widths (left, right, top, bottom) of TensorFlow ``"same"`` for stride 1.

    Examples
    --------
    >>> same_padding((3, 3), (1, 1)), same_padding((2, 2), (1, 1))
    ((1, 1, 1, 1), (0, 1, 0, 1))
    """
    out = []
    for k, d in ((kernel[1], dilation[1]), (kernel[0], dilation[0])):
        total = d * (k - 1)
        out += [total // 2, total - total // 2]
    return tuple(out)


class _Conv2D(nn.Module):
    """Keras Conv2D (stride 1 or any, ``same``/``valid``) with its activation."""

    def __init__(self, name: str, cfg: Mapping[str, Any], in_channels: int) -> None:
        super().__init__()
        self.kernel = _pair(cfg["kernel_size"])
        self.stride = _pair(cfg.get("strides", 1))
        self.dilation = _pair(cfg.get("dilation_rate", 1))
        self.padding = str(cfg.get("padding", "valid")).lower()
        if self.padding == "same" and self.stride != (1, 1):
            raise NotImplementedError(f"layer {name!r}: strided 'same' convolution")
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise NotImplementedError(f"layer {name!r}: only channels_last files are supported")
        filters = int(cfg["filters"])
        self.weight = nn.Parameter(torch.zeros(filters, in_channels, *self.kernel))
        self.bias = nn.Parameter(torch.zeros(filters)) if cfg.get("use_bias", True) else None
        self.activation = _activation(cfg.get("activation", "linear"), name)
        self.out_channels = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            x = F.pad(x, same_padding(self.kernel, self.dilation))
        x = F.conv2d(x, self.weight, self.bias, stride=self.stride, dilation=self.dilation)
        return _apply_activation(self.activation, x)

    def load_keras(self, arrays: list[np.ndarray]) -> None:
        """Set kernel (HWIO) and bias from the HDF5 arrays."""
        kernel = torch.from_numpy(np.ascontiguousarray(arrays[0].transpose(3, 2, 0, 1)))
        if kernel.shape != self.weight.shape:
            raise ValueError(f"kernel shape {tuple(kernel.shape)} != {tuple(self.weight.shape)}")
        self.weight.data.copy_(kernel)
        if self.bias is not None:
            self.bias.data.copy_(torch.from_numpy(np.asarray(arrays[1])))


class _BatchNorm(nn.Module):
    """Keras BatchNormalization in inference mode (moving statistics)."""

    def __init__(self, name: str, cfg: Mapping[str, Any], channels: int) -> None:
        super().__init__()
        if _nchw_axis(cfg.get("axis", -1), name) != 1:
            raise NotImplementedError(f"layer {name!r}: normalisation over a spatial axis")
        self.center = bool(cfg.get("center", True))
        self.scale = bool(cfg.get("scale", True))
        self.eps = float(cfg.get("epsilon", 1e-3))
        self.weight = nn.Parameter(torch.ones(channels)) if self.scale else None
        self.bias = nn.Parameter(torch.zeros(channels)) if self.center else None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    def load_keras(self, arrays: list[np.ndarray]) -> None:
        """Keras order: gamma (if scale), beta (if center), moving mean, moving variance."""
        it = iter(arrays)
        if self.weight is not None:
            self.weight.data.copy_(torch.from_numpy(np.asarray(next(it))))
        if self.bias is not None:
            self.bias.data.copy_(torch.from_numpy(np.asarray(next(it))))
        self.running_mean.copy_(torch.from_numpy(np.asarray(next(it))))
        self.running_var.copy_(torch.from_numpy(np.asarray(next(it))))


class _Activation(nn.Module):
    """Keras Activation layer."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.activation = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_activation(self.activation, x)


class _MaxPool(nn.Module):
    """Keras MaxPooling2D with ``valid`` padding."""

    def __init__(self, name: str, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.pool = _pair(cfg.get("pool_size", 2))
        self.stride = _pair(cfg.get("strides") or self.pool)
        if str(cfg.get("padding", "valid")).lower() != "valid":
            raise NotImplementedError(f"layer {name!r}: only 'valid' max pooling is supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.pool, self.stride)


class _UpSample(nn.Module):
    """Keras UpSampling2D, nearest neighbour (each pixel repeated)."""

    def __init__(self, name: str, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.size = _pair(cfg.get("size", 2))
        if cfg.get("interpolation", "nearest") != "nearest":
            raise NotImplementedError(f"layer {name!r}: only nearest upsampling is supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.size[0], 2).repeat_interleave(self.size[1], 3)


class _Concat(nn.Module):
    """Keras Concatenate along one (NCHW-mapped) axis."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class _Add(nn.Module):
    """Keras Add."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _Identity(nn.Module):
    """Dropout and noise layers at inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _inbound(layer: Mapping[str, Any]) -> list[str]:
    """Names of the layers feeding ``layer`` (first call node only)."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    if len(nodes) > 1:
        raise NotImplementedError(f"layer {layer['name']!r} is called more than once")
    return [entry[0] for entry in nodes[0]]


class KerasGraph(nn.Module):
    """A Keras functional model (single input, single output) as a PyTorch module.

    Parameters
    ----------
    model_config : dict
        The parsed ``model_config`` JSON of the HDF5 file (``{"class_name": "Model",
        "config": {"layers": [...], "input_layers": ..., "output_layers": ...}}``).

    Notes
    -----
    ``forward`` takes NCHW tensors; the Keras model's NHWC input ``(B, H, W, C)``
    corresponds to ``x.permute(0, 3, 1, 2)``. Parameters are named ``<layer>.weight``,
    ``<layer>.bias``, ``<layer>.running_mean``, ... after the Keras layer names.

    Examples
    --------
    >>> cfg = {"class_name": "Model", "config": {"name": "tiny", "layers": [
    ...   {"class_name": "InputLayer", "name": "in",
    ...    "config": {"batch_input_shape": [None, 8, 8, 1]}, "inbound_nodes": []},
    ...   {"class_name": "Conv2D", "name": "c", "config": {"filters": 2, "kernel_size": [3, 3],
    ...    "padding": "same", "activation": "relu"}, "inbound_nodes": [[["in", 0, 0, {}]]]}],
    ...   "input_layers": [["in", 0, 0]], "output_layers": [["c", 0, 0]]}}
    >>> KerasGraph(cfg)(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 2, 8, 8])
    """

    def __init__(self, model_config: Mapping[str, Any]) -> None:
        super().__init__()
        if model_config.get("class_name") not in ("Model", "Functional"):
            raise NotImplementedError(f"Keras {model_config.get('class_name')!r} models")
        cfg = model_config["config"]
        self.model_config = json.loads(json.dumps(model_config))
        inputs = [entry[0] for entry in cfg["input_layers"]]
        outputs = [entry[0] for entry in cfg["output_layers"]]
        if len(inputs) != 1 or len(outputs) != 1:
            raise NotImplementedError("only single-input, single-output models are supported")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.order: list[tuple[str, list[str]]] = []
        self.layers = nn.ModuleDict()
        self.keras_classes: dict[str, str] = {}
        channels: dict[str, int] = {}
        for layer in _topological(cfg["layers"]):
            name, kind, lcfg = layer["name"], layer["class_name"], layer["config"]
            parents = _inbound(layer)
            self.keras_classes[name] = kind
            if kind == "InputLayer":
                shape = lcfg.get("batch_input_shape") or lcfg.get("batch_shape")
                self.input_shape = tuple(shape[1:])
                channels[name] = int(shape[-1])
                continue
            c_in = [channels[p] for p in parents]
            module, channels[name] = self._make(name, kind, lcfg, c_in)
            self.layers[name] = module
            self.order.append((name, parents))

    @staticmethod
    def _make(
        name: str, kind: str, cfg: Mapping[str, Any], c_in: list[int]
    ) -> tuple[nn.Module, int]:
        if kind == "Conv2D":
            conv = _Conv2D(name, cfg, c_in[0])
            return conv, conv.out_channels
        if kind == "BatchNormalization":
            return _BatchNorm(name, cfg, c_in[0]), c_in[0]
        if kind == "Activation":
            return _Activation(_activation(cfg["activation"], name)), c_in[0]
        if kind == "MaxPooling2D":
            return _MaxPool(name, cfg), c_in[0]
        if kind == "UpSampling2D":
            return _UpSample(name, cfg), c_in[0]
        if kind == "Concatenate":
            dim = _nchw_axis(cfg.get("axis", -1), name)
            return _Concat(dim), sum(c_in) if dim == 1 else c_in[0]
        if kind == "Add":
            return _Add(), c_in[0]
        if kind in ("Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise"):
            return _Identity(), c_in[0]
        raise NotImplementedError(f"layer {name!r}: Keras {kind} is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on an NCHW batch; returns the output layer's NCHW tensor."""
        values: dict[str, torch.Tensor] = {self.input_name: x}
        consumers: dict[str, int] = {}
        for _, parents in self.order:
            for p in parents:
                consumers[p] = consumers.get(p, 0) + 1
        for name, parents in self.order:
            values[name] = self.layers[name](*(values[p] for p in parents))
            for p in parents:  # free intermediate activations once they are used up
                consumers[p] -= 1
                if consumers[p] == 0 and p != self.output_name:
                    del values[p]
        return values[self.output_name]

    def load_hdf5_weights(self, path: str | Path) -> None:
        """Copy the weights of a Keras HDF5 file (``model_weights`` group) into the module."""
        import h5py

        with h5py.File(path, "r") as fh:
            group = fh["model_weights"] if "model_weights" in fh else fh
            for name, module in self.layers.items():
                if not hasattr(module, "load_keras"):
                    continue
                if name not in group:
                    raise KeyError(f"{path}: no weights for layer {name!r}")
                arrays = _layer_arrays(group[name])
                module.load_keras(arrays)


def _layer_arrays(group: Any) -> list[np.ndarray]:
    """The arrays of one layer's HDF5 group, in its ``weight_names`` order."""
    names = group.attrs.get("weight_names")
    if names is None:
        raise KeyError(f"{group.name}: no weight_names attribute")
    return [np.asarray(group[n.decode() if isinstance(n, bytes) else n]) for n in names]


def _topological(layers: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Layers ordered so that each comes after all of its inputs."""
    by_name = {layer["name"]: layer for layer in layers}
    done: set[str] = set()
    out: list[Mapping[str, Any]] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in stack:
            raise ValueError(f"cycle in the Keras graph at {name!r}")
        for parent in _inbound(by_name[name]):
            visit(parent, (*stack, name))
        done.add(name)
        out.append(by_name[name])

    for layer in layers:
        visit(layer["name"], ())
    return out


def read_model_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``model_config`` attribute of a Keras HDF5 file."""
    import h5py

    with h5py.File(path, "r") as fh:
        raw = fh.attrs.get("model_config")
        if raw is None:
            raise ValueError(f"{path}: not a Keras model file (no model_config attribute)")
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def load_keras_hdf5(path: str | Path) -> KerasGraph:
    """Build the graph of a Keras HDF5 file and load its weights (eval mode).

    Parameters
    ----------
    path : path
        Keras 2 HDF5 model file (``model.save(..., save_format="h5")``).

    Returns
    -------
    KerasGraph
    """
    net = KerasGraph(read_model_config(path))
    net.load_hdf5_weights(path)
    LOGGER.debug("loaded Keras graph %s (%d layers)", path, len(net.order))
    return net.eval()

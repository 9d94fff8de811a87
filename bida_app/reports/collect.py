"""Find bida derivatives and their sidecars in an output folder; read run statuses.

Everything here tolerates missing or malformed keys: a sidecar written by an older or newer
bida, or by the other method, still yields a row (with ``None`` where a value is absent).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bids.derivatives import ENTITY_ORDER, is_companion, read_sidecar

LOGGER = logging.getLogger(__name__)
_SHORT_TO_LONG = {short: key for key, short in ENTITY_ORDER}
_WORLD = ("LR", "AP", "SI")


@dataclass
class Derivative:
    """One super-resolved run found in the output folder.

    Attributes
    ----------
    image, sidecar : Path
        The ``desc-<method>_T2w.nii.gz`` file and its JSON sidecar.
    entities : dict
        BIDS entities parsed from the file name (``subject``, ``session``, ...).
    desc : str
        The ``desc-`` label (the method).
    meta : dict
        Sidecar contents (``{}`` if unreadable).
    std : Path or None
        The ``desc-<method>Std`` uncertainty map, when present.
    """

    image: Path
    sidecar: Path
    entities: dict
    desc: str
    meta: dict = field(default_factory=dict)
    std: Path | None = None

    @property
    def subject(self) -> str:
        """Subject label without ``sub-``."""
        return str(self.entities.get("subject", ""))

    @property
    def prefix(self) -> str:
        """Entity part of the file name (``sub-01_ses-1_acq-coronal``)."""
        return self.sidecar.name.split("_desc-")[0]

    @property
    def method(self) -> str:
        """Method named in the sidecar, else the ``desc-`` label."""
        method = self.meta.get("Method")
        return method if isinstance(method, str) and method else self.desc

    @property
    def name(self) -> str:
        """Short display name (``sub-01_acq-coronal (cubic)``)."""
        return f"{self.prefix} ({self.method})"


def parse_name(name: str) -> tuple[dict, str]:
    """Entities and ``desc`` label of a BIDS file name.

    Examples
    --------
    >>> parse_name("sub-01_ses-1_acq-coronal_run-2_desc-cubic_T2w.json")
    ({'subject': '01', 'session': '1', 'acquisition': 'coronal', 'run': '2'}, 'cubic')
    """
    stem = name.split(".")[0]
    entities, desc = {}, ""
    for part in stem.split("_"):
        if "-" not in part:
            continue
        short, value = part.split("-", 1)
        if short == "desc":
            desc = value
        elif short in _SHORT_TO_LONG:
            entities[_SHORT_TO_LONG[short]] = value
    return entities, desc


def find_derivatives(output_dir: str | Path, subject: str | None = None) -> list[Derivative]:
    """Every ``*_desc-<method>_T2w`` derivative with a sidecar (companion images excluded).

    Parameters
    ----------
    output_dir : path
        bida output folder.
    subject : str, optional
        Only this participant (with or without ``sub-``).
    """
    root = Path(output_dir)
    pattern = f"sub-{subject.removeprefix('sub-')}" if subject else "sub-*"
    found = []
    for sidecar in sorted(root.glob(f"{pattern}/**/anat/*_desc-*_T2w.json")):
        entities, desc = parse_name(sidecar.name)
        if not desc or is_companion(desc) or "subject" not in entities:
            continue
        image = sidecar.with_name(sidecar.name.replace(".json", ".nii.gz"))
        if not image.exists():
            LOGGER.warning("%s: sidecar without its image, skipped", sidecar)
            continue
        std = sidecar.with_name(sidecar.name.replace(f"desc-{desc}_", f"desc-{desc}Std_"))
        std = std.with_name(std.name.replace(".json", ".nii.gz"))
        found.append(
            Derivative(
                image=image,
                sidecar=sidecar,
                entities=entities,
                desc=desc,
                meta=read_sidecar(sidecar),
                std=std if std.exists() else None,
            )
        )
    return found


def find_values(meta: Any, pattern: str) -> dict[str, Any]:
    """Values of every key matching ``pattern`` (regex) anywhere in nested dicts/lists.

    Examples
    --------
    >>> find_values({"Model": {"axial": {"SHA256": "ab"}}, "ModelSHA256": "cd"}, "SHA256")
    {'Model.axial.SHA256': 'ab', 'ModelSHA256': 'cd'}
    """
    found: dict[str, Any] = {}

    def _walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                if re.search(pattern, str(key)) and not isinstance(value, (dict, list)):
                    found[where] = value
                else:
                    _walk(value, where)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                _walk(value, f"{path}[{i}]")

    _walk(meta, "")
    return found


def as_float(value: Any) -> float | None:
    """A number from a sidecar value: numbers as is, dicts/lists by their mean.

    Dicts are read through a ``Relative``/``Final``/``Mean``/``Value`` key when present.

    Examples
    --------
    >>> as_float(0.5), as_float({"Final": 0.2, "Initial": 1.0}), as_float([1, 3]), as_float("x")
    (0.5, 0.2, 2.0, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        for key in ("Relative", "Final", "Mean", "mean", "Value", "value"):
            if key in value:
                return as_float(value[key])
        value = list(value.values())
    if isinstance(value, list):
        numbers = [v for v in (as_float(x) for x in value) if v is not None]
        return sum(numbers) / len(numbers) if numbers else None
    return None


def _voxel_size(value: Any) -> list[float] | None:
    if isinstance(value, list) and len(value) == 3:
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            return None
    return None


def through_axis(meta: dict) -> tuple[int | None, str | None]:
    """Voxel axis and world axis (``"AP"``...) of the slice-select direction, if recorded."""
    axis = meta.get("ThroughPlaneAxis")
    voxel = axis.get("Voxel") if isinstance(axis, dict) else None
    world = axis.get("World") if isinstance(axis, dict) else None
    if voxel is None and isinstance(meta.get("Geometry"), dict):
        voxel = meta["Geometry"].get("ThroughPlaneAxis")
    voxel = int(voxel) if isinstance(voxel, (int, float)) else None
    return voxel, world if world in _WORLD else None


def factor(meta: dict) -> float | None:
    """Super-resolution factor: ``Geometry.Factor``, else input/output through-plane size."""
    geometry = meta.get("Geometry")
    for source in (geometry if isinstance(geometry, dict) else {}, meta):
        value = as_float(source.get("Factor"))
        if value is not None:
            return value
    voxel, _ = through_axis(meta)
    zin, zout = _voxel_size(meta.get("InputVoxelSize")), _voxel_size(meta.get("OutputVoxelSize"))
    if voxel is not None and zin and zout and zout[voxel] > 0:
        return zin[voxel] / zout[voxel]
    return None


def runtime(meta: dict) -> float | None:
    """``RuntimeSeconds``, else the sum of ``Timings``."""
    value = as_float(meta.get("RuntimeSeconds"))
    if value is None and isinstance(meta.get("Timings"), dict):
        numbers = [as_float(v) for v in meta["Timings"].values()]
        numbers = [v for v in numbers if v is not None]
        value = sum(numbers) if numbers else None
    return value


def warnings_of(meta: dict) -> list[str]:
    """``Warnings`` as a list of strings."""
    value = meta.get("Warnings")
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return []


_HASH_NOISE = {"methodparameters", "models", "model", "weights", "checkpoint"}


def model_hashes(meta: dict) -> dict[str, str]:
    """Every recorded model checksum (keys containing ``SHA256``), shortened to 12 digits.

    Labels are the key paths without generic parts (``MethodParameters.Models.axial.weights.
    sha256`` becomes ``axial``).

    Examples
    --------
    >>> model_hashes({"MethodParameters": {"Models": {"axial": {"weights": {"sha256": "f" * 64}}}},
    ...               "ModelSHA256": "0123456789abcdef"})
    {'axial': 'ffffffffffff', 'model': '0123456789ab'}
    """
    hashes = {}
    for key, value in find_values(meta, "(?i)sha256").items():
        if not isinstance(value, str):
            continue
        parts = [p for p in re.split(r"[.\[\]]+", key)[:-1] if p and p.lower() not in _HASH_NOISE]
        hashes[".".join(parts) or "model"] = value[:12]
    return hashes


def fmt_size(value: Any) -> str:
    """``0.2×1×0.2`` from a voxel-size list (``""`` when missing).

    Examples
    --------
    >>> fmt_size([0.2, 1.0, 0.2])
    '0.2×1×0.2'
    """
    sizes = _voxel_size(value)
    return "×".join(f"{s:.4g}" for s in sizes) if sizes else ""


def key_fields(meta: dict, desc: str = "") -> list[tuple[str, str]]:
    """Display rows (label, text) of a sidecar's key fields, for the participant report."""
    rows: list[tuple[str, str]] = []

    def _num(value: float | None, fmt: str, unit: str = "") -> str:
        return "" if value is None else f"{value:{fmt}}{unit}"

    _, world = through_axis(meta)
    hashes = model_hashes(meta)
    timings = meta.get("Timings") if isinstance(meta.get("Timings"), dict) else {}
    rows += [
        ("Method", str(meta.get("Method") or desc)),
        ("Through-plane axis", world or ""),
        ("Factor", _num(factor(meta), ".3g", "×")),
        ("Slice thickness", _num(as_float(meta.get("SliceThickness")), ".3g", " mm")),
        ("Slice spacing", _num(as_float(meta.get("SliceSpacing")), ".3g", " mm")),
        ("Input voxel size (mm)", fmt_size(meta.get("InputVoxelSize"))),
        ("Output voxel size (mm)", fmt_size(meta.get("OutputVoxelSize"))),
        ("Model SHA256", ", ".join(f"{k}: {v}" for k, v in hashes.items())),
        (
            "Data-consistency residual",
            _num(as_float(meta.get("DataConsistencyResidual")), ".4g"),
        ),
        ("Runtime", _num(runtime(meta), ".3g", " s")),
        (
            "Timings",
            ", ".join(f"{k} {as_float(v) or 0:.3g} s" for k, v in timings.items()),
        ),
        ("Device", str(next(iter(find_values(meta, "^Device$").values()), "") or "")),
        ("GPU", str(next(iter(find_values(meta, "^GPU$").values()), "") or "")),
        ("Seed", str(meta.get("Seed", ""))),
        ("bida version", str(meta.get("SoftwareVersion", ""))),
        ("Warnings", "; ".join(warnings_of(meta)) or "none"),
    ]
    return [(label, text) for label, text in rows if text]


def read_status(output_dir: str | Path) -> list[dict]:
    """Merge every ``logs/**/bida_status*.json`` (newest file wins per run).

    Entries are dicts with at least ``run`` and ``status``; malformed files are skipped with a
    warning.
    """
    logs = Path(output_dir) / "logs"
    files = sorted(logs.glob("**/bida_status*.json"), key=lambda p: p.stat().st_mtime)
    merged: dict[str, dict] = {}
    for path in files:
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            LOGGER.warning("%s: unreadable run status (%s), skipped", path, exc)
            continue
        if isinstance(entries, dict):
            entries = entries.get("runs", [entries])
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("run"):
                merged[str(entry["run"])] = {"status": "unknown", "message": "", **entry}
    for entry in merged.values():
        if not entry.get("subject"):
            entry["subject"] = parse_name(Path(entry["run"]).name)[0].get("subject")
    return [merged[k] for k in sorted(merged)]

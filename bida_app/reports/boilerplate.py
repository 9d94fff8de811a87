"""A citable methods paragraph built from the sidecars a run wrote (like fMRIPrep's boilerplate).

Everything comes from the derivatives' JSON sidecars (method and its parameters, priors and
their SHA-256, N4 settings, geometry, device), plus the versions of the libraries in the
environment that writes it. A method bida does not describe in words (a new one) is still
described by its name and ``MethodParameters``. The text is Markdown with ``[@key]``
citations; :func:`write_citation` writes ``logs/CITATION.md`` and ``logs/CITATION.bib``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..utils.io import atomic_path
from .collect import find_derivatives
from .references import bibtex

LOGGER = logging.getLogger(__name__)
WAIVER = (
    "The text above was generated automatically by bida from the sidecars of the run, "
    "with the intention that users copy and paste it into their manuscripts unchanged. "
    "It is released under the [CC0](https://creativecommons.org/publicdomain/zero/1.0/) "
    "licence."
)
#: Method descriptions in words: a format string (filled from ``MethodParameters`` and
#: derived values) and the references it cites.
METHOD_TEXT: dict[str, tuple[str, list[str]]] = {
    "cubic": (
        "The through-plane axis was upsampled by cubic B-spline interpolation [@unser_splines].",
        ["unser_splines"],
    ),
    "dccubic": (
        "The through-plane axis was upsampled with data-consistent cubic interpolation: cubic "
        "B-spline interpolation [@unser_splines] followed by one projection onto the acquired "
        "slices, x ← x + A⁺(y − Ax), where A models the acquisition ({profile} slice profile "
        "of FWHM equal to the slice thickness, followed by slice sampling) and {inverse_text}",
        ["unser_splines"],
    ),
    "bida": (
        "The through-plane axis was super-resolved with Biplanar DDNM Averaging (BiDA) "
        "[@gharib_bida]. Two 2D diffusion models [@ddpm] trained with a flow-matching "
        "objective [@flow_matching] served as priors, one for each slice plane that contains "
        "the through-plane axis ({planes}). {prior_text} Every slice of each plane was sampled "
        "with DDIM [@ddim] ({steps} steps, η = {eta}), replacing the range-space component "
        "with {data_text} at every step as in DDNM [@ddnm], with a forward model A made "
        "of a {profile} slice profile (FWHM equal to the slice thickness) followed by slice "
        "sampling; the two plane volumes were averaged. {samples_text}",
        ["gharib_bida", "ddpm", "flow_matching", "ddim", "ddnm"],
    ),
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "×".join(_fmt(v) for v in value)
    return str(value)


def _distinct(values: Iterable[Any]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"`` of the distinct formatted values, in order."""
    seen = list(dict.fromkeys(_fmt(v) for v in values if v not in (None, "", [])))
    if len(seen) <= 1:
        return "".join(seen)
    return ", ".join(seen[:-1]) + " and " + seen[-1]


def _params(meta: dict) -> dict:
    params = meta.get("MethodParameters")
    return params if isinstance(params, dict) else {}


def _method(meta: dict, desc: str = "") -> str:
    return str(meta.get("Method") or desc or "unknown")


def _profile(metas: list[dict]) -> str:
    profiles = [_params(m).get("SliceProfile") for m in metas]
    profiles += [str(m.get("DataConsistencyModel", "")).split(" slice profile")[0] for m in metas]
    return _distinct(p for p in profiles if p) or "Gaussian"


def _priors_text(metas: list[dict]) -> str:
    models: dict[str, dict] = {}
    for m in metas:
        for plane, info in (_params(m).get("Models") or {}).items():
            if isinstance(info, dict) and info.get("SHA256"):
                models.setdefault(f"{plane}:{info['SHA256']}", {"Plane": plane, **info})
    if not models:
        return ""
    if any(str(_params(m).get("Prior")) == "self" for m in metas):
        return (
            "The priors were fitted on each scan's own in-plane slices turned by 90° "
            "(scan-adaptive priors; each model's SHA-256 is in the run's sidecar)."
        )
    described = [
        f"{info['Plane']} (`{info.get('Preset', 'custom')}` UNet, "
        f"{_fmt(info.get('Parameters', '?'))} parameters, SHA-256 `{info['SHA256']}`)"
        for info in models.values()
    ]
    return "The priors were: " + "; ".join(described) + "."


def _inverse_text(params: list[dict]) -> str:
    """What A⁺ was in dccubic's projection: exact, Wiener-shrunk, or damped
    (``MethodParameters.Damping``)."""
    damping = [p.get("Damping") for p in params if p.get("Damping")]
    if not damping:
        return (
            "A⁺ is its pseudo-inverse, so that the result re-degrades exactly to the acquired "
            "slices."
        )
    if all(d == "auto" for d in damping):
        return (
            "A⁺ is its pseudo-inverse, and the residual y − A x was first multiplied by the "
            "Wiener gain for the scan's noise level (estimated from its flattest in-plane "
            "detail and bounded by the residual itself), so that noise-free slices are matched "
            "exactly and the noise in noisy ones is not put back; the result re-degrades to "
            "the acquired slices up to that noise."
        )
    return (
        "A⁺ is its Tikhonov-damped inverse, Aᵀ(AAᵀ + λdI)⁻¹ with λ = "
        f"{_distinct(damping)} and d the mean of diag(AAᵀ), which shrinks the correction "
        "where the slices determine the image only weakly (robust to noise and to an "
        "inexact slice profile), so that the result re-degrades to the acquired slices up "
        "to a small residual."
    )


def _data_text(metas: list[dict]) -> str:
    """What BiDA's range-space replacement used (``DataTerm``): the slices, or the slices as
    the data-consistent cubic explains them."""
    if any(str(m.get("DataTerm", "")).startswith("the slices as dccubic") for m in metas):
        return (
            "the acquired slices as the data-consistent cubic explains them (the part of its "
            "residual attributed to the scan's noise held back by a Wiener gain)"
        )
    return "the acquired data"


def describe_method(method: str, metas: list[dict]) -> tuple[str, list[str]]:
    """Sentences and references for the runs of one method.

    Examples
    --------
    >>> text, refs = describe_method("mine", [{"MethodParameters": {"Order": 5}}])
    >>> text
    'The through-plane axis was super-resolved with the method `mine` (Order = 5).'
    """
    params = [_params(m) for m in metas]
    if method not in METHOD_TEXT:
        flat = {
            k: _distinct(p.get(k) for p in params)
            for k in dict.fromkeys(k for p in params for k in p)
            if not any(isinstance(p.get(k), dict) for p in params)
        }
        details = "; ".join(f"{k} = {v}" for k, v in flat.items() if v)
        return (
            f"The through-plane axis was super-resolved with the method `{method}`"
            + (f" ({details})." if details else "."),
            [],
        )
    template, refs = METHOD_TEXT[method]
    n_samples = _distinct(p.get("NumberOfSamples") for p in params) or "1"
    samples_text = (
        ""
        if n_samples == "1"
        else f"{n_samples} posterior samples were averaged; their voxel-wise standard "
        "deviation is reported as an uncertainty map."
    )
    text = template.format(
        profile=_profile(metas),
        planes=_distinct(pl for p in params for pl in p.get("Planes", [])) or "two planes",
        steps=_distinct(p.get("Steps") for p in params) or "?",
        eta=_distinct(p.get("Eta") for p in params) or "0",
        prior_text=_priors_text(metas),
        samples_text=samples_text,
        inverse_text=_inverse_text(params),
        data_text=_data_text(metas),
    )
    if "slr" in text.lower():
        text = text.replace("slr slice profile", "Shinnar–Le Roux (SLR) [@slr] slice profile")
        refs = [*refs, "slr"]
    return " ".join(text.split()), refs


def _n4_text(metas: list[dict]) -> tuple[str, list[str]]:
    n4 = [
        m["BiasFieldCorrection"] for m in metas if isinstance(m.get("BiasFieldCorrection"), dict)
    ]
    if not n4:
        return "No intensity non-uniformity correction was applied.", []
    conv = [c.get("convergence") or {} for c in n4]
    software = _distinct(" ".join(str(c.get("software", "ANTsPy")).split()[:2]) for c in n4)
    text = (
        "Intensity non-uniformity was corrected with N4 [@n4] as implemented in "
        f"{software} [@antsx] (shrink factor "
        f"{_distinct(c.get('shrink_factor') for c in n4)}, iterations "
        f"{_distinct('/'.join(str(i) for i in c.get('iters', [])) for c in conv)} over the "
        f"fitting levels, convergence threshold {_distinct(c.get('tol') for c in conv)}, "
        f"B-spline distance {_distinct(c.get('spline_distance_mm') for c in n4)} mm, within a "
        "rough head mask) before super-resolution."
    )
    restored = [m for m in metas if m.get("BiasFieldReapplied") is True]
    if restored:
        companions = _distinct(f"`desc-{_method(m)}Biascorr`" for m in restored)
        text += (
            " The estimated field was then put back into the super-resolved image, so that its "
            "intensities are those of the acquired data; the bias-corrected result is kept as "
            f"a companion image ({companions})."
        )
    if len(n4) < len(metas):
        text += f" {len(metas) - len(n4)} run(s) were not corrected (`--no_n4`)."
    return text, ["n4", "antsx"]


def _versions() -> dict[str, str]:
    found = {}
    for name in ("nipype", "pybids", "nibabel", "numpy", "scipy", "antspyx", "torch"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def methods_text(metas: list[dict], descs: list[str] | None = None) -> tuple[str, list[str]]:
    """Markdown paragraphs describing how ``metas`` (sidecars) were produced, and the keys cited.

    Parameters
    ----------
    metas : list of dict
        JSON sidecars of the derivatives (``*_desc-<method>_T2w.json``).
    descs : list of str, optional
        Their ``desc-`` labels, used when a sidecar lacks ``Method``.
    """
    descs = descs or [""] * len(metas)
    versions = _versions()
    refs = ["bida", "bids_apps", "nipype", "pybids"]
    axes = _distinct((m.get("ThroughPlaneAxis") or {}).get("World") for m in metas)
    paragraphs = [
        f"Thick-slice T2-weighted images were super-resolved with bida {__version__} "
        f"[@bida], a BIDS App [@bids_apps] built on Nipype {versions.get('nipype', '')} "
        f"[@nipype] and PyBIDS {versions.get('pybids', '')} [@pybids]. The input runs had "
        f"voxel sizes of {_distinct(m.get('InputVoxelSize') for m in metas)} mm and a slice "
        f"thickness of {_distinct(m.get('SliceThickness') for m in metas)} mm along the "
        f"{axes or 'through-plane'} axis."
    ]
    n4, n4_refs = _n4_text(metas)
    paragraphs.append(n4)
    refs += n4_refs
    by_method: dict[str, list[dict]] = {}
    for meta, desc in zip(metas, descs, strict=True):
        by_method.setdefault(_method(meta, desc), []).append(meta)
    for method, group in by_method.items():
        text, method_refs = describe_method(method, group)
        paragraphs.append(text)
        refs += method_refs
    devices = _distinct(
        (m.get("Compute") or m.get("BidaDevice") or {}).get("DeviceName") for m in metas
    )
    torch_used = any(isinstance(m.get("Compute") or m.get("BidaDevice"), dict) for m in metas)
    residuals = [
        float(m["DataConsistencyResidual"])
        for m in metas
        if isinstance(m.get("DataConsistencyResidual"), (int, float))
    ]
    residual = ""
    if residuals:
        low, high = f"{min(residuals):.3g}", f"{max(residuals):.3g}"
        span = f"was {low}" if low == high else f"ranged from {low} to {high}"
        residual = f"; the relative data-consistency residual ‖Ax − y‖/‖y‖ {span}"
    # dccubic's own description already ends with this projection
    projected = [
        m
        for m, desc in zip(metas, descs, strict=True)
        if str(m.get("FinalProjection", "")).startswith("x <-") and _method(m, desc) != "dccubic"
    ]
    if projected:
        which = "Every output was" if len(projected) == len(metas) else "Outputs were"
        methods = _distinct(f"`{_method(m)}`" for m in projected)
        paragraphs.append(
            f"{which} finally projected onto the acquired slices, x ← x + A⁺(y − Ax), so that "
            f"{'it re-degrades' if len(projected) == 1 else 'they re-degrade'} exactly to the "
            f"acquired data ({methods})."
        )
    closing = (
        f"Outputs have voxel sizes of {_distinct(m.get('OutputVoxelSize') for m in metas)} mm"
        + residual
        + ". Software: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + (f"; PyTorch [@pytorch] ran on {devices or 'the CPU'}" if torch_used else "")
        + "."
    )
    paragraphs.append(closing)
    if torch_used:
        refs.append("pytorch")
    return "\n\n".join(paragraphs), list(dict.fromkeys(refs))


def participant_boilerplate(output_dir: str | Path, subject: str) -> dict[str, str]:
    """``{"text": ..., "bibtex": ...}`` for one participant's report (empty if no runs)."""
    found = find_derivatives(output_dir, subject)
    if not found:
        return {"text": "", "bibtex": ""}
    text, refs = methods_text([d.meta for d in found], [d.desc for d in found])
    return {"text": text, "bibtex": bibtex(refs)}


def write_citation(output_dir: str | Path) -> tuple[Path, Path] | None:
    """Write ``logs/CITATION.md`` and ``logs/CITATION.bib`` for every derivative in the folder.

    Returns
    -------
    tuple of Path or None
        The two files, or ``None`` when the folder holds no derivative yet.
    """
    output_dir = Path(output_dir)
    found = find_derivatives(output_dir)
    if not found:
        return None
    text, refs = methods_text([d.meta for d in found], [d.desc for d in found])
    md = output_dir / "logs" / "CITATION.md"
    bib = md.with_suffix(".bib")
    with atomic_path(md) as tmp:
        tmp.write_text(f"# Methods\n\n{text}\n\n{WAIVER}\n\nReferences: `CITATION.bib`.\n")
    with atomic_path(bib) as tmp:
        tmp.write_text(bibtex(refs))
    LOGGER.info("methods boilerplate: %s, %s", md, bib)
    return md, bib

"""The methods boilerplate (``logs/CITATION.md`` + ``.bib`` and the report's Methods section)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bida_app import __version__
from bida_app.cli.main import main
from bida_app.reports.boilerplate import describe_method, methods_text, write_citation
from bida_app.reports.collect import find_derivatives
from bida_app.reports.references import BIBTEX, bibtex

N4 = {
    "Method": "N4 (ANTsPy)",
    "software": "ANTsPy 0.6.3 n4_bias_field_correction",
    "shrink_factor": 4,
    "convergence": {"iters": [50, 50, 30], "tol": 1e-07},
    "spline_distance_mm": 10.0,
}
SHA_AX, SHA_SAG = "a" * 64, "b" * 64


def _meta(method: str, **extra) -> dict:
    meta = {
        "Sources": ["bids:raw:sub-01/anat/sub-01_T2w.nii.gz"],
        "InputVoxelSize": [0.2, 1.0, 0.2],
        "OutputVoxelSize": [0.2, 0.2, 0.2],
        "ThroughPlaneAxis": {"Voxel": 1, "World": "AP"},
        "SliceThickness": 1.0,
        "BiasFieldCorrection": N4,
        "Method": method,
        "DataConsistencyResidual": 1e-8,
    }
    meta.update(extra)
    return meta


def _bida_meta(**params) -> dict:
    models = {
        "axial": {"SHA256": SHA_AX, "Preset": "small", "Parameters": 1033937},
        "sagittal": {"SHA256": SHA_SAG, "Preset": "small", "Parameters": 1033937},
    }
    base = {"Steps": 16, "Eta": 0.0, "NumberOfSamples": 1, "Prior": "pretrained"}
    base.update(Planes=["axial", "sagittal"], SliceProfile="gaussian", Models=models)
    base.update(params)
    return _meta("bida", MethodParameters=base, Compute={"Device": "cpu", "DeviceName": "x86_64"})


def _cited(text: str) -> list[str]:
    return re.findall(r"\[@([A-Za-z0-9_]+)\]", text)


def test_bida_paragraph_has_parameters_priors_hashes_and_references():
    text, refs = methods_text([_bida_meta(Steps=16, Eta=0.5, NumberOfSamples=4)])
    assert f"bida {__version__}" in text
    assert "16 steps" in text and "η = 0.5" in text and "4 posterior samples" in text
    assert SHA_AX in text and SHA_SAG in text and "axial" in text and "sagittal" in text
    assert "N4" in text and "shrink factor 4" in text and "50/50/30" in text
    assert "ANTsPy 0.6.3" in text and "1e-07" in text and "10 mm" in text
    assert "PyTorch" in text and "x86_64" in text
    for key in ("gharib_bida", "ddnm", "ddim", "n4", "nipype", "pytorch"):
        assert key in refs
    assert set(_cited(text)) == set(refs), "every reference is cited and every citation listed"
    assert set(refs) <= set(BIBTEX)


def test_slr_profile_is_named_and_cited_only_when_used():
    text, refs = methods_text([_bida_meta(SliceProfile="slr")])
    assert "Shinnar–Le Roux" in text and "slr" in refs
    text, refs = methods_text([_bida_meta()])
    assert "gaussian slice profile" in text and "slr" not in refs


def test_cubic_paragraph_cites_splines_and_not_diffusion_or_torch():
    text, refs = methods_text([_meta("cubic")])
    assert "cubic B-spline" in text and "unser_splines" in refs
    assert not {"ddnm", "ddim", "gharib_bida", "pytorch"} & set(refs)
    assert "residual ‖Ax − y‖/‖y‖ was 1e-08" in text


def test_dccubic_describes_the_projection_onto_the_acquired_slices():
    text, refs = methods_text([_meta("dccubic", MethodParameters={"SliceProfile": "slr"})])
    assert "A⁺(y − Ax)" in text and "data-consistent cubic" in text
    assert "slr" in refs and "unser_splines" in refs
    assert "re-degrades exactly" in text and "damped" not in text
    damped, _ = methods_text([_meta("dccubic", MethodParameters={"Damping": 0.1})])
    assert "Tikhonov-damped" in damped and "λ = 0.1" in damped
    assert "re-degrades exactly" not in damped
    auto, _ = methods_text([_meta("dccubic", MethodParameters={"Damping": "auto"})])
    assert "Wiener gain" in auto and "noise-free slices are matched exactly" in auto
    assert "Tikhonov" not in auto and "re-degrades exactly" not in auto


def test_a_new_method_is_described_from_its_sidecar():
    meta = _meta("sinc", MethodParameters={"Lobes": 3, "Window": "hann", "Nested": {"x": 1}})
    text, refs = describe_method("sinc", [meta])
    assert "`sinc`" in text and "Lobes = 3" in text and "Window = hann" in text
    assert "Nested" not in text and refs == []
    other = _meta("sinc", MethodParameters={"Nested": 2, "Lobes": 4})
    text, _ = describe_method("sinc", [other, meta])
    assert "Lobes = 4 and 3" in text and "Nested" not in text
    full, _ = methods_text([meta, _meta("cubic")])
    assert "`sinc`" in full and "cubic B-spline" in full


def test_method_falls_back_to_the_desc_label():
    meta = _meta("cubic")
    del meta["Method"]
    text, _ = methods_text([meta], ["mymethod"])
    assert "`mymethod`" in text


def test_runs_without_n4_and_mixed_values_are_reported():
    no_n4 = _meta("cubic", SliceThickness=0.5, DataConsistencyResidual=0.05)
    del no_n4["BiasFieldCorrection"]
    text, refs = methods_text([no_n4])
    assert "No intensity non-uniformity correction" in text and "n4" not in refs
    text, _ = methods_text([_meta("cubic"), no_n4])
    assert "1 run(s) were not corrected" in text
    assert "thickness of 1 and 0.5 mm" in text and "ranged from 1e-08 to 0.05" in text


def test_field_put_back_and_final_projection_are_reported():
    projected = {"BiasFieldReapplied": True, "FinalProjection": "x <- x + pinv(A) (y - A x)"}
    text, _ = methods_text([_bida_meta() | projected])
    assert "field was then put back" in text and "`desc-bidaBiascorr`" in text
    assert "Every output was finally projected onto the acquired slices" in text
    plain = _meta("cubic", BiasFieldReapplied=False, FinalProjection="none (not consistent)")
    text, _ = methods_text([plain])
    assert "put back" not in text and "finally projected" not in text
    text, _ = methods_text([plain, _meta("dccubic") | projected])
    assert "finally projected" not in text  # dccubic's description says it already
    text, _ = methods_text([plain, _bida_meta() | projected])
    assert "Outputs were finally projected" in text and "(`bida`)" in text


def test_scan_adaptive_priors_are_described_as_such():
    text, _ = methods_text([_bida_meta(Prior="self")])
    assert "scan-adaptive" in text and SHA_AX not in text


def test_bibtex_entries_are_well_formed():
    text = bibtex(list(BIBTEX))
    keys = re.findall(r"^@\w+\{(\w+),$", text, re.M)
    assert keys == list(BIBTEX)
    assert text.count("{") == text.count("}")
    assert f"version = {{{__version__}}}" in text
    assert bibtex(["nope"]) == ""


def test_write_citation_needs_derivatives(tmp_path: Path):
    assert write_citation(tmp_path) is None
    assert not (tmp_path / "logs").exists()


def test_write_citation_writes_markdown_and_bibtex(tmp_path: Path):
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_desc-bida_T2w.nii.gz").write_bytes(b"")
    (anat / "sub-01_desc-bida_T2w.json").write_text(json.dumps(_bida_meta()))
    md, bib = write_citation(tmp_path)
    assert md == tmp_path / "logs" / "CITATION.md" and bib == md.with_suffix(".bib")
    text = md.read_text()
    assert text.startswith("# Methods") and "CC0" in text and SHA_AX in text
    bib_keys = re.findall(r"^@\w+\{(\w+),$", bib.read_text(), re.M)
    assert set(bib_keys) == set(_cited(text))
    assert sorted(p.name for p in md.parent.iterdir()) == ["CITATION.bib", "CITATION.md"]


@pytest.mark.slow
def test_participant_run_writes_boilerplate_and_report_section(tmp_path: Path):
    bids, out = tmp_path / "bids", tmp_path / "out"
    assert main(["demo-data", str(bids), "--small"]) == 0
    assert main([str(bids), str(out), "participant", "--participant_label", "01"]) == 0
    (found,) = find_derivatives(out, "01")
    meta = found.meta
    text = (out / "logs" / "CITATION.md").read_text()
    assert f"`{meta['Method']}`" in text or "cubic B-spline" in text
    assert "N4" in text
    assert f"shrink factor {meta['BiasFieldCorrection']['shrink_factor']}" in text
    assert "@article{n4," in (out / "logs" / "CITATION.bib").read_text()
    html = (out / "sub-01.html").read_text()
    assert 'id="boilerplate"' in html and "cubic B-spline interpolation" in html
    assert "Biascorr" in html  # the field put back and the companion named
    assert "@software{bida," in html


def test_bida_names_its_data_term():
    explained = _meta("bida", DataTerm="the slices as dccubic explains them (A x_dccubic)")
    text, _ = methods_text([explained])
    assert "as the data-consistent cubic explains them" in text and "Wiener gain" in text
    plain, _ = methods_text([_meta("bida", DataTerm="the slices given")])
    assert "with the acquired data at every step" in plain and "Wiener" not in plain

"""Property-based fuzzing of NIfTI headers and sidecars through discovery and loading.

Every generated input must end in success or a :class:`~bida_app.errors.BidaError` with one
of the documented exit codes: never another exception.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bida_app.bids.discovery import describe_run, index_dataset, select_t2w_runs
from bida_app.errors import BidaError, ExitCode
from bida_app.utils.nifti import load_volume

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ODD_FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 1e-30, 1e30]),
    st.floats(min_value=0.01, max_value=5.0),
)


#: What can go wrong with a header field, one strategy per field.
PERTURBATIONS = {
    "dim": st.lists(st.sampled_from([0, 1, 2, 5, -3, 4096, 30000]), min_size=8, max_size=8).map(
        lambda d: [min(max(d[0], -1), 8), *d[1:]]
    ),
    "ndim": st.sampled_from([1, 2, 4, 5, 7]),
    "pixdim": st.lists(ODD_FLOATS, min_size=3, max_size=3),
    "srow": st.lists(ODD_FLOATS, min_size=12, max_size=12),
    "sform_code": st.sampled_from([0, 3, 7]),
    "qform_code": st.sampled_from([0, 2, 7]),
    "quatern_b": st.sampled_from([0.5, 2.0, math.nan, math.inf]),
    "datatype": st.sampled_from([0, 1, 32, 128, 9999]),
    "vox_offset": st.sampled_from([0.0, 100.0, 1e9, -352.0]),
    "scl_slope": st.sampled_from([0.0, math.nan, math.inf, -2.0]),
    "magic": st.sampled_from([b"ni1", b"xyz", b""]),
    "truncate": st.floats(0.0, 0.99),
    "shear": st.floats(-0.5, 0.5),
}


@st.composite
def headers(draw) -> tuple[bytes, dict]:
    """A valid small NIfTI-1 file with 0-3 of its header fields damaged."""
    shape = (draw(st.integers(2, 8)), draw(st.integers(2, 5)), draw(st.integers(2, 8)))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64]))
    data = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    zooms = draw(st.sampled_from([(0.1, 1.0, 0.1), (1.0, 10.0, 1.0), (0.2, 0.2, 0.2)]))
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    hdr = img.header
    hdr.set_qform(img.affine, code=1)
    damage = draw(st.dictionaries(st.sampled_from(sorted(PERTURBATIONS)), st.none(), max_size=3))
    damage = {k: draw(PERTURBATIONS[k]) for k in damage}
    if "shear" in damage:
        affine = img.affine.copy()
        affine[0, 2] = damage["shear"]
        hdr.set_sform(affine, code=2)
    if "srow" in damage:
        for i, axis in enumerate("xyz"):
            hdr[f"srow_{axis}"] = damage["srow"][4 * i : 4 * i + 4]
    if "ndim" in damage:
        hdr["dim"][0] = damage["ndim"]
    if "pixdim" in damage:
        hdr["pixdim"][1:4] = damage["pixdim"]
    for key in ("dim", "sform_code", "qform_code", "quatern_b", "datatype", "vox_offset"):
        if key in damage:
            hdr[key] = damage[key]
    for key in ("scl_slope", "magic"):
        if key in damage:
            hdr[key] = damage[key]
    raw = hdr.binaryblock + b"\0" * 4 + data.tobytes()
    if "truncate" in damage:
        raw = raw[: int(len(raw) * damage["truncate"])]
    return raw, damage


def _ok_or_bida_error(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
        event(f"{fn.__name__}: ok")
        return result
    except BidaError as exc:
        event(f"{fn.__name__}: exit {int(exc.code)} {str(exc).split(': ', 1)[-1][:25]}")
        assert exc.code in set(ExitCode) and exc.code != ExitCode.OK
        assert str(exc) and "\n" not in str(exc)
        return None


@settings(FUZZ, max_examples=200)
@given(case=headers(), gz=st.booleans(), scale=st.sampled_from([1.0, 0.1, 1e-9]))
def test_fuzzed_headers_end_in_success_or_bida_error(tmp_path, case, gz, scale):
    raw, _ = case
    path = tmp_path / ("f.nii.gz" if gz else "f.nii")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    run = _ok_or_bida_error(describe_run, path, tmp_path, {"subject": "01"}, {}, scale)
    if run is None:
        return
    assert len(run.shape) == 3 and min(run.shape) >= 2
    assert all(math.isfinite(z) and z > 0 for z in run.zooms)
    img = _ok_or_bida_error(load_volume, path, header_scale=scale)
    if img is not None:
        data = np.asarray(img.dataobj)
        assert data.ndim == 3 and np.isfinite(data).all()


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@pytest.fixture(scope="module")
def good_nifti(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nii") / "sub-01_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 3, 6), np.float32), np.diag([0.1, 1.0, 0.1, 1])), path)
    return path


@FUZZ
@given(thickness=JSON_VALUES)
def test_fuzzed_slice_thickness_never_crashes(good_nifti, thickness):
    run = describe_run(
        good_nifti, good_nifti.parent, {"subject": "01"}, {"SliceThickness": thickness}
    )
    assert math.isfinite(run.thickness_mm) and run.thickness_mm > 0


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sidecar=st.one_of(
        JSON_VALUES.map(json.dumps),
        st.sampled_from(["", "{", "[1, 2", '{"SliceThickness": }', "\x00\xff", "null"]),
    ),
    description=st.sampled_from(
        ['{"Name": "x", "BIDSVersion": "1.9.0"}', '{"Name": "x"}', "{bad", "[]", ""]
    ),
    validate=st.booleans(),
)
def test_fuzzed_dataset_through_pybids(
    tmp_path_factory, good_nifti, sidecar, description, validate
):
    root = tmp_path_factory.mktemp("bids")
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_T2w.nii.gz").write_bytes(good_nifti.read_bytes())
    (anat / "sub-01_T2w.json").write_text(sidecar, encoding="utf-8", errors="surrogateescape")
    (root / "dataset_description.json").write_text(description)
    layout = _ok_or_bida_error(index_dataset, root, validate=validate)
    if layout is not None:
        runs = _ok_or_bida_error(select_t2w_runs, layout)
        assert runs is None or [r.path.name for r in runs] == ["sub-01_T2w.nii.gz"]

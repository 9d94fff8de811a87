"""The workflow factories take explicit options; the participant level unpacks its config."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bida_app.cli.participant import recorded_options, workflow_options
from bida_app.config import RunConfig
from bida_app.workflows.base import init_bida_wf, init_single_run_wf

RUN = {
    "path": __file__,  # any existing file: the workflow is only built here, not run
    "label": "sub-01_acq-coronal_T2w",
    "through_axis": 1,
    "thickness_mm": 1.0,
    "inplane_mm": 0.25,
    "relpath": "sub-01/anat/sub-01_acq-coronal_T2w.nii.gz",
    "entities": {"subject": "01", "acquisition": "coronal", "suffix": "T2w"},
}


def test_config_unpacks_into_every_factory_option():
    cfg = RunConfig("b", "o", "participant", method="bida", steps=5, device="cuda:1")
    options = workflow_options(cfg)
    signature = inspect.signature(init_single_run_wf).parameters
    keyword_only = [n for n, p in signature.items() if p.kind is p.KEYWORD_ONLY]
    assert sorted(options) == sorted(n for n in keyword_only if n != "name")
    assert options["steps"] == 5 and options["device"] == "cuda:1"
    assert options["recorded"] == recorded_options(cfg)


@pytest.mark.parametrize(
    ("options", "sr_node", "n4_node", "std_wired"),
    [
        ({}, "dccubic", True, False),
        ({"method": "cubic", "n4": False}, "cubic", False, False),
        ({"method": "bida", "n_samples": 2, "steps": 3, "device": "cuda:1"}, "bida", True, True),
    ],
)
def test_single_run_wf_follows_its_options(options, sr_node, n4_node, std_wired):
    wf = init_single_run_wf(RUN, Path("out"), name="run_x", **options)
    names = set(wf.list_node_names())
    assert sr_node in names and ("n4" in names) == n4_node
    sr = wf.get_node(sr_node)
    sink = wf.get_node("ds_t2w")
    assert sink.inputs.method == options.get("method", "dccubic")
    assert sr.inputs.target_mm == RUN["inplane_mm"]  # target_resolution 0: in-plane size
    edges = [d["connect"] for _, v, d in wf._graph.edges(data=True) if v is sink]
    wired = {dst for connect in edges for _, dst in connect}
    assert ("std_file" in wired) == std_wired
    if sr_node == "bida":
        assert (sr.inputs.steps, sr.inputs.device, sr.inputs.n_samples) == (3, "cuda:1", 2)


def test_bida_wf_has_one_sub_workflow_per_run():
    second = RUN | {"label": "sub-02_T2w"}
    wf = init_bida_wf([RUN, second], Path("out"), Path("work"), method="cubic")
    subs = sorted(n.name for n in wf._graph.nodes())
    assert subs == ["run_sub_01_acq_coronal_T2w", "run_sub_02_T2w"]

"""QC reports on the demo output, checked as files and as rendered by headless Chromium.

The browser tests need Debian's Chromium and its driver plus Selenium::

    apt-get install -y chromium chromium-driver
    pip install selenium

They fail (not skip) when those are missing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bida_app.cli.main import main
from bida_app.reports.collect import find_derivatives
from bida_app.reports.figures import entity_prefix, figures_dir
from bida_app.reports.group import write_group_report
from bida_app.reports.participant import write_participant_report
from bida_app.reports.plotting import png_size
from bida_app.reports.regenerate import regenerate_reports

INSTALL_HINT = (
    "headless Chromium is needed for the report tests: "
    "`apt-get install -y chromium chromium-driver && pip install selenium`"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
#: Run whose bias field / uncertainty map the fixture fakes (panels shown only for it).
BIAS_RUN = "sub-01_acq-coronal"
STD_RUN = "sub-03_ses-2_acq-coronal"


def _fake_bias(bids: Path, work: Path) -> None:
    """A smooth multiplicative field where the N4 node of sub-01's workflow leaves it."""
    raw = nib.load(bids / "sub-01" / "anat" / "sub-01_acq-coronal_T2w.nii.gz")
    x = np.linspace(0.8, 1.2, raw.shape[0], dtype=np.float32)
    field = np.broadcast_to(x[:, None, None], raw.shape).copy()
    node = work / "bida_0_0_0" / "bida_wf" / "run_sub_01_acq_coronal_T2w" / "n4"
    node.mkdir(parents=True)
    nib.save(nib.Nifti1Image(field, raw.affine), node / "n4_biasfield.nii.gz")


def _fake_std(out: Path) -> None:
    """A ``desc-cubicStd`` map beside one derivative (as BiDA with K > 1 writes)."""
    image = next(out.glob(f"sub-03/ses-2/anat/{STD_RUN}_desc-cubic_T2w.nii.gz"))
    img = nib.load(image)
    std = np.abs(np.gradient(np.asarray(img.dataobj, dtype=np.float32), axis=1))
    nib.save(
        nib.Nifti1Image(std, img.affine), image.with_name(image.name.replace("cubic", "cubicStd"))
    )


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> dict:
    """Demo dataset, participant run (cubic, no N4), reports regenerated and group report."""
    root = tmp_path_factory.mktemp("reports")
    bids, out = root / "bids", root / "out"
    assert main(["demo-data", str(bids), "--small"]) == 0
    assert main([str(bids), str(out), "participant", "--no_n4", "--method", "cubic"]) == 0
    _fake_bias(bids, out / "work")
    _fake_std(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*_desc-cubic_T2w.nii.gz")}
    reports = regenerate_reports(out, bids, None, work_dir=out / "work")
    group = write_group_report(out)
    return {"bids": bids, "out": out, "reports": reports, "group": group, "mtimes": mtimes}


class _Links(HTMLParser):
    """Collects ``src``/``href`` of a page and the tags that could load remote content."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.scripts_with_src: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if "src" in attrs:
            self.srcs.append(attrs["src"])
            if tag == "script":
                self.scripts_with_src.append(attrs["src"])
        if "href" in attrs:
            self.hrefs.append(attrs["href"])


def _links(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# ----------------------------------------------------------------------------- files


def test_every_run_gets_aligned_figures(demo_out):
    out = demo_out["out"]
    derivatives = find_derivatives(out)
    assert len(derivatives) == 4
    for d in derivatives:
        fig = figures_dir(out, d.subject)
        for plane in ("sagittal", "axial"):  # coronal slices: the planes containing A-P
            before = fig / f"{d.prefix}_desc-{plane}Input_T2w.png"
            after = fig / f"{d.prefix}_desc-{plane}Cubic_T2w.png"
            assert png_size(before) == png_size(after)  # slider/flicker need equal sizes
            svg = (fig / f"{d.prefix}_desc-{plane}CubicFlicker_T2w.svg").read_text()
            assert before.name in svg and after.name in svg and "http" not in svg.split(">", 1)[1]
            assert (fig / f"{d.prefix}_desc-{plane}Bias_T2w.png").exists() == (
                d.prefix == BIAS_RUN
            )
            assert (fig / f"{d.prefix}_desc-{plane}CubicStd_T2w.png").exists() == (
                d.prefix == STD_RUN
            )
        qc = json.loads((fig / f"{d.prefix}_desc-cubicQC_T2w.json").read_text())
        assert qc["ThroughPlaneWorldAxis"] == "AP"
        assert qc["Input"]["snr"] > 0 and 0 < qc["Output"]["sharpness"] < 1.5
    assert not list(out.glob("sub-*/figures/.*"))  # no temporary files left behind


def test_reports_only_rerenders_without_recomputing(demo_out):
    out, bids = demo_out["out"], demo_out["bids"]
    fig = figures_dir(out, "02")
    shutil.rmtree(fig)
    (out / "sub-02.html").unlink()
    reports = regenerate_reports(out, bids, ["sub-02"])
    assert reports == [out / "sub-02.html"] and reports[0].exists()
    assert (fig / "sub-02_acq-coronal_desc-sagittalCubic_T2w.png").exists()
    now = {p: p.stat().st_mtime_ns for p in out.rglob("*_desc-cubic_T2w.nii.gz")}
    assert now == demo_out["mtimes"]  # derivatives untouched


def test_reports_only_without_derivatives_exits_66(demo_out):
    from bida_app.errors import BidaError

    with pytest.raises(BidaError) as err:
        regenerate_reports(demo_out["out"], demo_out["bids"], ["sub-99"])
    assert int(err.value.code) == 66 and "participant(s) 99" in str(err.value)


def test_participant_report_is_self_contained(demo_out):
    out = demo_out["out"]
    assert sorted(p.name for p in demo_out["reports"]) == [
        "sub-01.html",
        "sub-02.html",
        "sub-03.html",
    ]
    for report in demo_out["reports"]:
        links = _links(report)
        assert links.srcs, report
        assert not links.scripts_with_src
        for src in links.srcs + [h for h in links.hrefs if not h.startswith("#")]:
            assert "://" not in src and not src.startswith("//"), src
            assert (out / src).is_file(), src
    text = (out / "sub-03.html").read_text()
    assert text.count('class="run"') == 2  # two sessions
    assert "1.2 mm" in text  # slice spacing of ses-2 from its sidecar


def test_participant_report_lists_its_failed_runs(demo_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out["out"], out, ignore=shutil.ignore_patterns("work"))
    status = json.loads((out / "logs" / "bida_status.json").read_text())
    status.append(
        {"run": "sub-01/anat/sub-01_acq-sag_T2w.nii.gz", "subject": "01", "status": "failed",
         "message": "expected a 3D image"}
    )  # fmt: skip
    (out / "logs" / "bida_status.json").write_text(json.dumps(status))
    html = write_participant_report(out, "sub-01").read_text()
    assert "expected a 3D image" in html and html.count('class="run"') == 1
    assert "expected a 3D image" not in write_participant_report(out, "02").read_text()
    empty = write_participant_report(out, "09").read_text()
    assert "No super-resolved run" in empty


def test_reports_of_a_bida_run_with_uncertainty(demo_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out["out"], out, ignore=shutil.ignore_patterns("work", "figures"))
    anat = out / "sub-02" / "anat"
    cubic = anat / "sub-02_acq-coronal_desc-cubic_T2w"
    img = nib.load(cubic.with_suffix(".nii.gz"))
    meta = json.loads(cubic.with_suffix(".json").read_text())
    meta.update(
        {
            "Method": "bida",
            "MethodParameters": {
                "NumberOfSamples": 4,
                "Models": {"sagittal": {"weights": {"sha256": "5a" * 32}}},
            },
            "DataConsistencyResidual": 0.0123,
            "Compute": {"Device": "cuda", "GPU": "NVIDIA H100"},
            "Timings": {"super_resolution": 41.5},
            "RuntimeSeconds": 41.5,
        }
    )
    bida = anat / "sub-02_acq-coronal_desc-bida_T2w"
    nib.save(img, bida.with_suffix(".nii.gz"))
    bida.with_suffix(".json").write_text(json.dumps(meta))
    std = np.abs(np.asarray(img.dataobj, np.float32)) * 0.05
    nib.save(nib.Nifti1Image(std, img.affine), anat / "sub-02_acq-coronal_desc-bidaStd_T2w.nii.gz")
    regenerate_reports(out, demo_out["bids"], ["02"])
    fig = figures_dir(out, "02")
    for name in ("sagittalBida", "axialBidaStd", "sagittalCubic", "bidaQC", "cubicQC"):
        assert list(fig.glob(f"sub-02_acq-coronal_desc-{name}_T2w.*")), name
    assert not list(fig.glob("*CubicStd*"))  # the cubic run has no uncertainty map
    html = (out / "sub-02.html").read_text()
    assert html.count('class="run"') == 2
    assert "5a5a5a5a5a5a" in html and "0.0123" in html and "NVIDIA H100" in html
    assert "sub-02_acq-coronal_desc-sagittalBidaStd_T2w.png" in html
    table = pd.read_csv(write_group_report(out)["tsv"], sep="\t")
    assert sorted(table["method"]) == ["bida", "cubic", "cubic", "cubic", "cubic"]
    assert table.loc[table["method"] == "bida", "runtime_s"].item() == 41.5


def test_group_table_has_one_row_per_run(demo_out):
    out = demo_out["out"]
    table = pd.read_csv(demo_out["group"]["tsv"], sep="\t", dtype=str, keep_default_na=False)
    assert len(table) == len(find_derivatives(out)) == 4
    assert table["subject"].tolist() == ["01", "02", "03", "03"]
    assert table["session"].tolist() == ["n/a", "n/a", "1", "2"]
    assert table["factor"].astype(float).tolist() == [5.0, 5.0, 5.0, 6.0]
    assert table["input_voxel_size"].tolist()[1] == "0.2×0.2×1"  # sub-02 is stored L-I-P
    for column in ("snr", "cnr", "sharpness", "residual", "input_snr"):
        assert (table[column].astype(float) > 0).all(), column
    for name in ("distributions", "mosaic", "html"):
        assert demo_out["group"][name].is_file()


def test_group_report_lists_failed_participants(demo_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out["out"], out, ignore=shutil.ignore_patterns("work"))
    extra = out / "logs" / "job-sub-04" / "bida_status.json"
    extra.parent.mkdir(parents=True)
    extra.write_text(
        json.dumps(
            [
                {
                    "run": "sub-04/anat/sub-04_acq-coronal_T2w.nii.gz",
                    "subject": "04",
                    "status": "failed",
                    "message": "cannot read NIfTI data (truncated)",
                }
            ]
        )
    )
    paths = write_group_report(out)
    table = pd.read_csv(paths["tsv"], sep="\t")
    assert len(table) == 4
    html = paths["html"].read_text()
    assert "sub-04_acq-coronal_T2w.nii.gz" in html and "truncated" in html
    # only failures left: the report is still written, listing them
    for anat in out.glob("sub-*/**/anat"):
        shutil.rmtree(anat)
    paths = write_group_report(out)
    assert "truncated" in paths["html"].read_text()
    assert len(pd.read_csv(paths["tsv"], sep="\t")) == 0


def test_group_level_on_empty_output_exits_66(demo_out, tmp_path, capsys):
    empty = tmp_path / "out"
    empty.mkdir()
    assert main([str(demo_out["bids"]), str(empty), "group"]) == 66
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to report" in err[0]
    assert main([str(demo_out["bids"]), str(tmp_path / "missing"), "group"]) == 66


def test_group_level_cli_writes_report(demo_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out["out"], out, ignore=shutil.ignore_patterns("work", "group*"))
    assert main([str(demo_out["bids"]), str(out), "group"]) == 0
    assert (out / "group_report.html").is_file() and (out / "group_T2w.tsv").is_file()


def test_run_report_figures_interface(demo_out, tmp_path):
    from bida_app.interfaces.reports import RunReportFigures

    out, bids = tmp_path / "out", demo_out["bids"]
    sr = next(demo_out["out"].glob("sub-02/anat/*_desc-cubic_T2w.nii.gz"))
    node = RunReportFigures(
        in_file=str(bids / "sub-02" / "anat" / "sub-02_acq-coronal_T2w.nii.gz"),
        sr_file=str(sr),
        run_info={
            "label": "sub-02_acq-coronal_T2w",
            "entities": {"subject": "02", "acquisition": "coronal"},
        },
        output_dir=str(out),
        method="cubic",
    )
    cwd = tmp_path / "node"
    cwd.mkdir()
    result = node.run(cwd=str(cwd))
    files = [Path(f) for f in result.outputs.out_files]
    assert len(files) == 7 and all(f.is_file() for f in files)
    assert {f.parent for f in files} == {out / "sub-02" / "figures"}
    assert files[-1].name == "sub-02_acq-coronal_desc-cubicQC_T2w.json"
    assert entity_prefix({"subject": "02", "acquisition": "coronal"}) in files[0].name


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium (Debian's chromium + chromium-driver)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.fail(f"Chromium or chromedriver not found; {INSTALL_HINT}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed; {INSTALL_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="bida-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, path: Path) -> list[dict]:
    """Load a page, wait for its images, return the console messages."""
    browser.get_log("browser")  # drop messages of earlier pages
    browser.get(path.resolve().as_uri())
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(Array.from(document.images).map(i => i.complete ? 0 :"
        " new Promise(r => { i.onload = r; i.onerror = r; }))).then(done);"
    )
    return browser.get_log("browser")


def _broken_images(browser) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.images)"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));"
    )


def test_participant_reports_render_in_chromium(demo_out, browser):
    out = demo_out["out"]
    for report in sorted(out.glob("sub-*.html")):
        subject = report.stem.removeprefix("sub-")
        console = _open(browser, report)
        n_images = browser.execute_script("return document.images.length;")
        assert n_images >= 4 and _broken_images(browser) == [], report.name
        assert [m for m in console if m["level"] in ("SEVERE", "WARNING")] == [], console
        runs = browser.execute_script("return document.querySelectorAll('section.run').length;")
        assert runs == len(find_derivatives(out, subject))
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll('table.fields'))"
            ".map(t => t.tBodies[0].rows.length);"
        )
        assert len(rows) == runs and min(rows) >= 8
    # the std and bias panels appear only where the maps exist
    _open(browser, out / "sub-03.html")
    alts = browser.execute_script("return Array.from(document.images).map(i => i.alt);")
    assert sum("uncertainty" in a for a in alts) == 2 and not any("bias" in a for a in alts)


def test_slider_and_flicker_work_in_chromium(demo_out, browser):
    _open(browser, demo_out["out"] / "sub-01.html")
    clip = browser.execute_script(
        "const box = document.querySelector('.compare');"
        "const range = box.querySelector('input[type=range]');"
        "range.value = 20; range.dispatchEvent(new Event('input'));"
        "return box.querySelector('.after').style.clipPath;"
    )
    assert clip == "inset(0px 0px 0px 20%)"
    states = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const box = document.querySelector('.compare');"
        "const button = box.querySelector('button.flicker'); button.click();"
        "const seen = new Set();"
        "const t = setInterval(() => seen.add(box.querySelector('.after').style.clipPath), 50);"
        "setTimeout(() => { clearInterval(t); button.click();"
        " done([Array.from(seen), button.textContent]); }, 1500);"
    )
    seen, label = states
    assert "inset(0px 0px 0px 0%)" in seen and "inset(0px 0px 0px 100%)" in seen
    assert label == "Flicker"
    assert [m for m in browser.get_log("browser") if m["level"] == "SEVERE"] == []


def test_group_report_renders_in_chromium(demo_out, browser, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out["out"], out, ignore=shutil.ignore_patterns("work"))
    (out / "logs" / "bida_status_extra.json").write_text(
        json.dumps([{"run": "sub-05/anat/sub-05_T2w.nii.gz", "status": "failed", "message": "x"}])
    )
    paths = write_group_report(out)
    console = _open(browser, paths["html"])
    assert _broken_images(browser) == []
    assert browser.execute_script("return document.images.length;") == 2
    assert [m for m in console if m["level"] in ("SEVERE", "WARNING")] == [], console
    rows = browser.execute_script("return document.querySelector('#runs').tBodies[0].rows.length;")
    assert rows == len(find_derivatives(out)) == 4
    failed = browser.execute_script(
        "return Array.from(document.querySelector('#failures').tBodies[0].rows)"
        ".map(r => r.cells[0].textContent);"
    )
    assert failed == ["sub-05/anat/sub-05_T2w.nii.gz"]
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('#runs a')).map(a => a.getAttribute('href'));"
    )
    assert links == ["sub-01.html", "sub-02.html", "sub-03.html", "sub-03.html"]

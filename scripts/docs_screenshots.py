"""Screenshots of the QC reports for the documentation (headless Chromium + Selenium).

Usage::

    python scripts/docs_screenshots.py OUTPUT_DIR [--img docs/img]

``OUTPUT_DIR`` is a bida output folder with participant reports and a group report (e.g. the
demo: ``bida demo-data demo/bids && bida demo/bids demo/out participant && bida demo/bids
demo/out group``). Writes ``report_methods.png`` (the Methods section of the first
participant report) and ``group_report.png`` (the top of the group report).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

LOGGER = logging.getLogger("docs_screenshots")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


def browser(width: int = 1100, height: int = 900):
    """A headless Chromium driver (Debian's ``chromium`` + ``chromedriver``) and its profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        raise SystemExit("chromium and chromedriver are needed (scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="bida-shots-")
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(driver_bin), options=options), profile


def shoot(output_dir: Path, img_dir: Path) -> list[Path]:
    """Write the two screenshots into ``img_dir`` and return their paths."""
    from selenium.webdriver.common.by import By

    reports = sorted(output_dir.glob("sub-*.html"))
    group = output_dir / "group_report.html"
    if not reports or not group.is_file():
        raise SystemExit(f"{output_dir}: needs sub-*.html and group_report.html")
    img_dir.mkdir(parents=True, exist_ok=True)
    driver, profile = browser()
    try:
        driver.get(reports[0].resolve().as_uri())
        section = driver.find_element(By.ID, "boilerplate")
        driver.execute_script(
            "arguments[0].querySelector('details').open = true; arguments[0].scrollIntoView();",
            section,
        )
        methods = img_dir / "report_methods.png"
        section.screenshot(str(methods))
        driver.get(group.resolve().as_uri())
        group_png = img_dir / "group_report.png"
        driver.save_screenshot(str(group_png))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    for path in (methods, group_png):
        LOGGER.info("wrote %s", path)
    return [methods, group_png]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="bida output folder with reports")
    parser.add_argument("--img", type=Path, default=Path("docs/img"), help="where to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shoot(args.output_dir, args.img)
    return 0


if __name__ == "__main__":
    sys.exit(main())

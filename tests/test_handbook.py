"""The handbook: generated from the rules, checked as a person would see it, in headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from fsgs_kb.cli import main
from fsgs_kb.engine.load.paths import bundled_rules_dir

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("handbook")
    result = CliRunner().invoke(main, ["docs", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_rule_has_a_page_in_plain_english(site: Path) -> None:
    page = (site / "rules" / "CSA-DOSE-EXCEEDS.html").read_text(encoding="utf-8")
    assert (
        "the total daily cyclosporine dose per kilogram of actual body weight is above 5 mg/kg/day "
        "(from the review, S5; parameter max_daily_dose)"
    ) in page
    assert "Provided the total dose is kept to 5 mg/kg or less" in page
    rules = list((bundled_rules_dir() / "recommendations").glob("*.yaml"))
    assert len(list((site / "rules").glob("*.html"))) == len(rules) >= 19


def test_the_abstract_links_sentences_to_rules(site: Path) -> None:
    page = (site / "source.html").read_text(encoding="utf-8")
    assert 'id="S6"' in page and 'href="rules/CSA-RELAPSE-REINTRODUCE.html"' in page
    assert "not encoded: Background" in page


def test_unverified_citations_are_flagged(site: Path) -> None:
    page = (site / "parameters.html").read_text(encoding="utf-8")
    assert page.count("not verified") >= 5 and "signed by: nobody yet" in page


def test_site_is_self_contained(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), page
        assert "<script" not in text


def test_markdown_handbook(tmp_path: Path) -> None:
    target = tmp_path / "handbook.md"
    assert CliRunner().invoke(main, ["docs", "-o", str(target), "--format", "md"]).exit_code == 0
    text = target.read_text(encoding="utf-8")
    assert "### CSA-RELAPSE-REINTRODUCE" in text and "| max_daily_dose | 5 mg/kg/day | from the review, S5 |" in text


def _browser():  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1400",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def test_pages_load_links_resolve_and_the_diagram_renders_in_chromium(site: Path) -> None:
    browser = _browser()
    try:
        pages = sorted(site.rglob("*.html"))
        for page in pages:
            browser.get(page.as_uri())
            severe = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
            assert severe == [], (page, severe)
            script = (
                "return [...document.querySelectorAll('a')]"
                ".map(a => new URL(a.getAttribute('href'), document.baseURI).href)"
            )
            for href in browser.execute_script(script):
                url = urlparse(href)
                assert url.scheme == "file", href
                target = Path(url.path)
                assert target.is_file(), (page, href)
                if url.fragment:
                    assert f'id="{url.fragment}"' in target.read_text(encoding="utf-8"), (page, href)
        browser.get((site / "diagram.html").as_uri())
        box = browser.execute_script(
            "const r = document.getElementById('dataflow').getBoundingClientRect();"
            "return [r.width, r.height, document.querySelectorAll('#dataflow rect').length]"
        )
        assert box[0] > 500 and box[1] > 300 and box[2] > 30, box
        ARTIFACTS.mkdir(exist_ok=True)
        browser.get((site / "rules" / "CSA-DOSE-EXCEEDS.html").as_uri())
        assert browser.find_element("tag name", "h1").text.startswith("CSA-DOSE-EXCEEDS")
        shot = ARTIFACTS / "handbook-rule-page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        browser.quit()

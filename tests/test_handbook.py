"""The handbook: generated from the rules, checked as a person would see it, in headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner
from support import RULES

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
        "total daily cyclosporine dose per kilogram of actual body weight is above 5 mg/kg/day (the review, S5)" in page
    )
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


BANNER = "DRAFT — not signed off, not for clinical use."


def test_the_front_page_says_what_this_is_and_lists_the_rules_by_kind(site: Path) -> None:
    page = (site / "index.html").read_text(encoding="utf-8")
    assert BANNER in page and "version <b>0." in page and "content fingerprint <code>" in page
    kinds = [page.index(f">{heading}</h3>") for heading in ("Warnings", "Advice", "Information", "Scope")]
    assert kinds == sorted(kinds)
    rules = len(list((RULES / "recommendations").glob("*.yaml")))
    assert page.count('<li><a href="rules/') == rules and "How to read this" in page
    # each rule has its one-line summary: the first sentence of what it says, whole
    assert "Relapses are common: rather than considering this relapse a failure of therapy, the review says" in page


def test_every_page_says_the_rules_are_unsigned(site: Path) -> None:
    for page in site.rglob("*.html"):
        assert BANNER in page.read_text(encoding="utf-8"), page


def test_thresholds_read_as_clinicians_write_them(site: Path) -> None:
    page = (site / "parameters.html").read_text(encoding="utf-8")
    assert "<b>5 mg/kg/day</b>" in page and "<b>secondary or genetic</b>" in page
    assert "<b>the 90th percentile</b>" in page and "<b>30%</b>" in page and "<b>none</b>" in page
    assert "['" not in page and " none<" not in page and "primary none" not in page


def test_provenance_without_editors_notes(site: Path) -> None:
    page = (site / "source.html").read_text(encoding="utf-8")
    assert "<p>Cattran DC. <i>" in page and "from memory" not in page


def test_the_diagram_speaks_clinically_with_ids_beneath(site: Path) -> None:
    page = (site / "diagram.html").read_text(encoding="utf-8")
    assert ">Weeks of high-dose corticosteroids</text>" in page and ">steroids.high_dose_weeks</text>" in page
    assert ">Blood-pressure monitoring on cyclosporine</text>" in page and ">CSA-MONITOR-BP · draft</text>" in page


def test_site_is_self_contained(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), page
        assert "<script" not in text


def test_markdown_handbook(tmp_path: Path) -> None:
    target = tmp_path / "handbook.md"
    assert CliRunner().invoke(main, ["docs", "-o", str(target), "--format", "md"]).exit_code == 0
    text = target.read_text(encoding="utf-8")
    assert "### CSA-RELAPSE-REINTRODUCE" in text
    assert "(`max_daily_dose`) | 5 mg/kg/day | the review, S5 |" in text
    assert "> **DRAFT — not signed off, not for clinical use." in text
    assert "| secondary or genetic | the review, T |" in text


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
        for name, page, heading in (
            ("front-page", "index.html", "Cyclosporine in idiopathic FSGS"),
            ("rule-page", "rules/CSA-DOSE-EXCEEDS.html", "Current cyclosporine dose above"),
            ("parameters-page", "parameters.html", "Thresholds and lists"),
            ("diagram-page", "diagram.html", "How patient data feeds the rules"),
        ):
            browser.set_window_size(1280, 1400)
            browser.get((site / page).as_uri())
            assert browser.find_element("tag name", "h1").text.startswith(heading)
            banner = browser.find_element("css selector", ".banner")
            assert banner.is_displayed() and banner.text.startswith(BANNER) and banner.location["y"] < 200
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, min(max(height, 800), 6000))  # the whole page, as a reader scrolls it
            shot = ARTIFACTS / f"handbook-{name}.png"
            browser.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_a_page_the_last_run_wrote_and_this_one_does_not_is_removed(tmp_path: Path) -> None:
    """A rule renamed or removed left its old page in the handbook folder, with advice the knowledge
    base no longer gives. The folder's record (.fsgs-kb-handbook.json) lists what `docs` wrote; the
    next run removes the listed pages it does not write again, and names, without removing, HTML
    pages no run recorded (someone's own, or a handbook written before the record existed)."""
    import json

    out = tmp_path / "handbook"
    assert CliRunner().invoke(main, ["docs", "-o", str(out)]).exit_code == 0
    record = out / ".fsgs-kb-handbook.json"
    pages = json.loads(record.read_text())["pages"]
    assert "rules/CSA-DOSE-EXCEEDS.html" in pages and "index.html" in pages
    # as if the last run's knowledge base had a rule this one has not
    stale = out / "rules" / "CSA-DOSE-OLD.html"
    shutil.copy(out / "rules" / "CSA-DOSE-EXCEEDS.html", stale)
    record.write_text(json.dumps({"format": "fsgs-kb handbook 1", "pages": [*pages, "rules/CSA-DOSE-OLD.html"]}))
    own = out / "notes.html"
    own.write_text("<p>the unit's own notes</p>")
    elsewhere = tmp_path / "elsewhere.html"
    elsewhere.write_text("not the handbook's")
    (out / "rules" / "link.html").symlink_to(elsewhere)
    result = CliRunner().invoke(main, ["docs", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and "removed 1 page(s)" in result.output and "rules/CSA-DOSE-OLD.html" in result.output
    assert own.exists() and elsewhere.exists()
    assert "warning[docs.unknown_pages] 2 HTML page(s)" in result.output and "notes.html" in result.output
    # a record that names a page outside the folder is not ours: nothing is removed through it
    record.write_text(json.dumps({"format": "fsgs-kb handbook 1", "pages": ["../elsewhere.html"]}))
    assert CliRunner().invoke(main, ["docs", "-o", str(out)]).exit_code == 0
    assert elsewhere.exists()

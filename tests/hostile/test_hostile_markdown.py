"""The Markdown outputs keep a knowledge base's text as text (hostile sweep g): a rule title holding
`<script>`/`<img onerror>`, advice holding `[link](javascript:…)`, an interpretation holding
`<iframe>` and a history entry holding `<svg onload>` were written verbatim by
`docs --format md` and `audit --format md`, and ran in any Markdown→HTML pipeline. Every
Markdown writer escapes through engine/report/mdtext.md_text; the real CLI writes the files here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hostile_kb import copy_kb, run_cli

from fsgs_kb.engine.report.mdtext import md_text

RULE = "CSA-DOSE-EXCEEDS"
# every way text could become HTML or a link in CommonMark, GFM or Python-Markdown
_ACTIVE = re.compile(
    r"<\s*/?\s*(script|img|iframe|svg|a)\b"  # a tag
    r"|<javascript:"  # an autolink
    r"|&#",  # a character reference that could spell either
    re.IGNORECASE,
)


def _unescaped_links(text: str) -> list[str]:
    """The `]` that close a link's or an image's text (or a reference definition's label, at the
    start of a line) without a backslash escaping them (an even run of backslashes before a `]`
    escapes only each other)."""
    found = []
    for match in re.finditer(r"(\\*)\]\s*[(\[]|^[\s>*+-]*\[[^\]]*?(\\*)\]:", text, re.MULTILINE):
        if len(match.group(1) or match.group(2) or "") % 2 == 0:
            found.append(text[max(0, match.start() - 40) : match.end() + 20])
    return found


@pytest.fixture(scope="module")
def hostile_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kb = copy_kb(tmp_path_factory.mktemp("md") / "rules")
    manifest = kb / "kb.yaml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(
        text.replace("\ntitle: Cyclosporine", "\ntitle: </title><script>alert('g')</script> Cyclosporine", 1),
        encoding="utf-8",
    )
    path = kb / "recommendations" / f"{RULE}.yaml"
    text = path.read_text(encoding="utf-8")
    for old, new in (
        (
            "title: Current cyclosporine",
            'title: \'<script>alert("a")</script><img src=x onerror=alert("b")>"&amp; Current cyclosporine',
        ),
        ("ceiling\nkind:", "ceiling'\nkind:"),
        (
            "outside that\n  proviso.",
            'outside that\n  proviso. <script>alert("c")</script> [link](javascript:alert("d"))'
            ' ![i](javascript:alert("d2")) \\[x\\](javascript:alert("d3")) [r]: javascript:alert("d4")'
            " <javascript:alert('d5')> &#60;script&#62;",
        ),
        ("  - >-\n    A safety proviso", '  - >-\n    <iframe src=javascript:alert("e")> A safety proviso'),
        ("change: First draft", 'change: First draft <svg onload=alert("f")>'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return kb


def _assert_text_only(markdown: str) -> None:
    assert "alert" in markdown  # the hostile text is there, as text
    active = [m.group() for m in _ACTIVE.finditer(markdown)]
    assert not active, active
    assert not _unescaped_links(markdown.replace("](#", "")), _unescaped_links(markdown)


def test_docs_markdown_escapes_html_and_links(hostile_kb: Path, tmp_path: Path) -> None:
    out = tmp_path / "hb.md"
    proc = run_cli("docs", "--format", "md", "--rules", str(hostile_kb), "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    written = out.read_text(encoding="utf-8")
    _assert_text_only(written)
    assert '&lt;script&gt;alert("a")&lt;/script&gt;&lt;img src=x onerror=alert("b")&gt;"&amp;amp;' in written
    assert '[link\\](javascript:alert("d"))' in written  # the text shows as written
    assert '\\\\[x\\\\\\](javascript:alert("d3"))' in written  # its own escapes cannot undo ours


def test_audit_markdown_escapes_html_and_links(hostile_kb: Path, tmp_path: Path) -> None:
    proc = run_cli("audit", "--format", "md", "--rule", RULE, "--rules", str(hostile_kb), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    _assert_text_only(proc.stdout)
    assert '&lt;iframe src=javascript:alert("e")&gt;' in proc.stdout
    assert '&lt;svg onload=alert("f")&gt;' in proc.stdout


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("complete remission (<= 0.3 g/d) and partial (>= 50% fall)", None),  # comparisons stay
        ('Creatinine [Mass/volume] in Serum, A & B, `validate`, (x), "q"', None),  # prose stays
        ("a\nb\x1b[31m", "a b\\x1b[31m"),  # one line, control characters visible
        ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
        ("[a](b) ![c][d] [e]: f", "[a\\](b) ![c\\][d\\] [e\\]: f"),
        ("\\[a\\](b)", "\\\\[a\\\\\\](b)"),
        ("&lt; &#60; &amp", "&amp;lt; &amp;#60; &amp"),
    ],
)
def test_md_text_escapes_only_what_is_needed(text: str, escaped: str | None) -> None:
    assert md_text(text) == (text if escaped is None else escaped)

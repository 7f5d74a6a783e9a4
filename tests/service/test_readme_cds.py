"""The README's CDS Hooks examples are real output: its warning card for
`examples/dose-above-ceiling.json` (abridged JSON and the Markdown detail) is what the running
service sends today, and its no-data card counts the prefetch queries discovery lists. An outside
audit found the card two knowledge-base releases stale (0.3.1, another fingerprint) and the count
at 33 where discovery listed 35. What the day decides is masked: the example Bundle is dated from
today, so its effective dates, hence the decision id and the card's uuid, change daily. After an
intended change, paste the card printed by the assertion message into the README."""

from __future__ import annotations

import json
import re
from typing import Any

from cds_support import ROOT, Server, example, hook_request, patient_bundle, patient_id, prefetch_for, signed_call

PV = "fsgs-csa-patient-view"
DAILY = (
    (re.compile(r"effective \d{4}-\d{2}-\d{2}(T[0-9:]+Z)?"), "effective DATE"),
    (re.compile(r"Decision `[0-9a-f]{32}`"), "Decision `ID`"),
    (re.compile(r'"uuid": "[0-9a-f-]{36}"'), '"uuid": "UUID"'),
)


def masked(text: str) -> str:
    for pattern, replacement in DAILY:
        text = pattern.sub(replacement, text)
    return text


def block_after(text: str, intro: str) -> str:
    start = text.index("```", text.index(intro))
    start = text.index("\n", start) + 1
    return text[start : text.index("```", start)]


def abridged(card: dict[str, Any]) -> str:
    """The card as the README prints it: no detail (shown next), the first override reason."""
    source, reasons = card["source"], card["overrideReasons"]

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    return "\n".join(
        [
            "{",
            *(f"  {dump(k)}: {dump(card[k])}," for k in ("uuid", "summary", "indicator")),
            '  "source": {',
            f'    "label": {dump(source["label"])},',
            f'    "url": {dump(source["url"])},',
            f'    "topic": {dump(source["topic"])}',
            "  },",
            f'  "links": {dump(card["links"])},',
            f'  "overrideReasons": [{dump(reasons[0])}, "… {len(reasons) - 1} more"]',
            "}",
            "",
        ]
    )


def test_the_readme_cds_cards_are_real_output(server: Server, ehr: Any) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    templates = {s["id"]: s["prefetch"] for s in services}[PV]
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    answer = signed_call(
        server, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch_for(templates, bundle, pid))
    )
    assert answer.status_code == 200, answer.text
    (card,) = [c for c in answer.json()["cards"] if c["source"]["topic"]["code"] == "CSA-DOSE-EXCEEDS"]
    assert set(card) == {"uuid", "summary", "indicator", "detail", "source", "links", "overrideReasons"}
    shown = block_after(readme, "**Cards** (real output for `examples/dose-above-ceiling.json`")
    assert masked(shown) == masked(abridged(card)), "README is stale: paste the card\n" + abridged(card)
    shown = block_after(readme, "where each came from, the evidence note and the ids to audit it:")
    assert masked(shown) == masked(card["detail"] + "\n"), "README is stale: paste the detail\n" + card["detail"]
    said = f"of {len(templates)} prefetch\nqueries, {len(templates)} not sent"
    assert f"(`No patient data received to assess: {said}`" in readme, (
        f"README is stale: discovery lists {len(templates)} queries"
    )

"""One patient's result explained for a clinician, or as JSON for tools (`fsgs-kb explain`).

Warnings first, then advice and information, then what could not be decided with what to
record, then (folded unless --all) the rules that do not apply. Each fired rule shows what it
says, why — its condition as nested groups, each comparison a sentence with units and where its
threshold comes from — the sentence it rests on and how that sentence was read. Every string
from the record is escaped (engine.report.text) before it reaches a terminal.
"""

from __future__ import annotations

import textwrap
from typing import Any

from fsgs_kb.engine.audit.replay import carried_note
from fsgs_kb.engine.evaluate.kleene import Memo
from fsgs_kb.engine.explain.clinical import ConditionWords, lower_first, short_reference
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.fields import pointer_title
from fsgs_kb.engine.load.templating import quantity
from fsgs_kb.engine.model import Rule
from fsgs_kb.engine.report.colour import PLAIN, Palette
from fsgs_kb.engine.report.text import patient_label, printable

WIDTH = 100
DRAFT_BANNER = "DRAFT — not signed off, not for clinical use"
STATUS_TEXT = {  # out_of_scope then says who the review covers (kb.yaml scope.covers): see status_text
    "evaluated": "evaluated",
    "out_of_scope": "out of scope",
    "scope_undetermined": "scope undetermined: cannot tell whether the review applies",
    "invalid": "invalid record: no rule was run",
    "error": "internal error: this result must not be used",
}
SECTIONS = (
    ("out_of_scope", "OUT OF SCOPE"),
    ("warning", "WARNINGS"),
    ("advice", "ADVICE"),
    ("caveat", "CAVEATS: where the evidence behind the advice may not apply"),
    ("info", "INFORMATION"),
)
MARK = {True: "✓", False: "✗", None: "?"}
FROM_RESULT = (
    "explained from the stored result (its input was not kept): checked against this knowledge base, "
    "the values as it records them, not re-derived"
)


# ---- the explanation as data ------------------------------------------------------------------
def status_text(kb: KnowledgeBase, status: str) -> str:
    """A result's status in words; out of scope, with who the review covers (the knowledge base's words)."""
    covers = kb.model.scope_covers
    text = STATUS_TEXT.get(status, status)
    return f"{text}: the review covers {covers} only" if status == "out_of_scope" and covers else text


def explanation(kb: KnowledgeBase, patient: Any, result: dict[str, Any]) -> dict[str, Any]:
    """The result with, for every rule, its condition as a tree of sentences for this patient,
    its interpretation notes, and the inputs to record (titles and pointers)."""
    doc: dict[str, Any] = {
        "kb": kb.identity,
        "patient_id": result.get("patient_id"),
        "status": result["status"],
        "status_text": status_text(kb, result["status"]),
        "scope_text": (result.get("scope") or {}).get("reason"),
        "decision_id": result["decision"]["decision_id"],
        "problems": result["errors"],
        "scope": None,
        "rules": [],
    }
    if result["status"] in ("invalid", "error"):
        return doc
    memo: Memo = {}
    words = ConditionWords(kb.model, kb.evaluator)
    if isinstance(patient, dict):
        values = kb.evaluation.values_of(patient)
        # as the result has them: a value the exact semantics decided is not shown as unknown
        known, _, _, settled = kb.evaluation.exact_derived(patient, values, memo)
        words = ConditionWords(kb.model, kb.evaluator, settled, kb.evaluation.recorded_unknown(patient))

        def because_of(model_rule: Rule, rule: dict[str, Any]) -> dict[str, Any]:
            return words.tree(model_rule.when, values, known, memo)

    elif all(isinstance(rule.get("conditions"), list) for rule in result["rules"]):
        # a full result kept without its input (checked by trace first): what it recorded
        doc["from_result"] = True

        def because_of(model_rule: Rule, rule: dict[str, Any]) -> dict[str, Any]:
            derived = {d["name"]: d for d in rule.get("derived", [])}
            return words.stored_tree(model_rule.when, iter(rule["conditions"]), derived)

    else:
        return doc
    shown = set(result["advice"]) | set(result.get("caveats", []))
    fired_caveats = [kb.model.rules[c] for c in result.get("caveats", []) if c in kb.model.rules]
    for rule in result["rules"]:
        model_rule = kb.model.rules[rule["id"]]
        section = rule["kind"] if rule["id"] in shown else rule["outcome"]
        entry = {
            "id": rule["id"],
            "version": rule["version"],
            "status": rule["status"],
            "kind": rule["kind"],
            "title": rule["title"],
            "outcome": rule["outcome"],
            "section": section,
            "says": rule["says"],
            "because": _decided(because_of(model_rule, rule), rule, model_rule.kind),
            "citations": rule["citations"],
            "evidence": rule["evidence"],
            "interpretation": [" ".join(note.split()) for note in model_rule.interpretation],
            "record": [_to_record(p) for p in rule["missing"]],
        }
        if rule.get("decided_without"):
            entry["decided_without"] = [_to_record(p) for p in rule["decided_without"]]
        if rule.get("shown"):
            entry["shown"] = [_shown_text(kb, item) for item in rule["shown"]]
        if model_rule.kind == "caveat":  # fired: the advice it qualifies for this patient; else all it could
            fired_advice = [q for q in model_rule.qualifies if q in result["advice"]]
            entry["qualifies"] = fired_advice if rule["id"] in shown and fired_advice else list(model_rule.qualifies)
            entry["rests_on"] = _caveat_source(model_rule.provenance_kind, model_rule.provenance)
        qualified_by = [c.id for c in fired_caveats if rule["id"] in c.qualifies]
        if qualified_by and rule["id"] in shown:
            entry["caveats"] = qualified_by
        if (
            rule["id"] in shown and model_rule.kind != "caveat"
        ):  # §7: the applicability checks the record could not make
            entry["unchecked_caveats"] = [
                {
                    "id": other["id"],
                    "title": other["title"],
                    "record": [_to_record(p) for p in _leaf_pointers(other["unchecked"])],
                }
                for other in result["rules"]
                if other.get("unchecked") and rule["id"] in kb.model.rules[other["id"]].qualifies
            ]
        doc["rules"].append(entry)
    scope = kb.model.derived.get("in_scope")
    if scope is not None and scope.condition is not None:
        missing = (result.get("scope") or {}).get("missing", [])
        if isinstance(patient, dict):
            tree = words.tree(scope.condition, values, known, memo)
            # the result's verdict, which the scope cases may leave undetermined where in_scope
            # itself is false (not biopsy-proven: null, as evaluate says, never false), and every
            # input it names (an etiology recorded as `unknown` is one to record)
            in_scope = (result.get("scope") or {}).get("in_scope")
            unrecorded = list(missing)
        else:  # the scope's own comparisons are not in a result: what it recorded of them
            recorded = (result.get("scope") or {}).get("in_scope")
            how = next((d["how"] for r in result["rules"] for d in r.get("derived", []) if d["name"] == "in_scope"), "")
            tree = {"kind": "condition", "met": recorded, "text": f"as the result records it: {how or 'unknown'}"}
            in_scope, unrecorded = recorded, list(missing)
        doc["scope"] = {
            "in_scope": in_scope,
            "covers": " ".join(scope.title.split()),
            "choices": words.local_choices("derived", "in_scope"),
            "because": tree,
            "record": [_to_record(p) for p in unrecorded],
        }
    return doc


def _decided(because: dict[str, Any], rule: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition tree with the rule's outcome where Kleene's tables leave it open but the exact
    semantics decided it (clinical-notes §4.1: every value the missing inputs could take, given the
    rest of the record, gives the same outcome). A caveat that did not fire may only lack its
    applicability check, so only a fired one is marked."""
    outcome = {"fired": True, "not_fired": False}.get(rule["outcome"])
    if because["met"] is not None or outcome is None or (kind == "caveat" and not outcome):
        return because
    return {**because, "met": outcome, "exact": True}


def _shown_text(kb: KnowledgeBase, item: dict[str, Any]) -> str:
    """A value a rule shows when it fires, as a clinician reads it: `current serum creatinine 160 umol/L`."""
    if "derived" in item:
        name = lower_first(kb.model.derived[item["derived"]].title) if item["derived"] in kb.model.derived else ""
    else:
        info = kb.evaluator.fields.get(item.get("field", ""))
        name = info.title if info is not None and info.title else str(item.get("field"))
    value = item.get("value")
    if isinstance(value, float):
        value = float(f"{value:.3g}")  # 77.8%, not 77.7777777778%
    return f"{name}: {'not recorded' if value is None else quantity(value, item.get('unit'))}"


def _caveat_source(kind: str | None, data: dict[str, Any]) -> str:
    """Where a caveat comes from, in a line: the review's sentence, a cited publication, local policy."""
    if kind == "source":
        return f"the review, {data.get('sentence')}"
    if kind == "cited":
        flag = "" if data.get("verified") else ", not verified against the publication"
        return f"cited: {short_reference(str(data.get('reference', '')), data.get('year'))}{flag}"
    if kind == "local":
        return f"local policy, decided {data.get('decided_on')}"
    return ""


def _leaf_pointers(pointers: list[str]) -> list[str]:
    """The pointers that are not a prefix of another (`/kidney_function/egfr`, not `/kidney_function`)."""
    return [p for p in pointers if not any(o != p and o.startswith(p + "/") for o in pointers)]


def _to_record(pointer: str) -> dict[str, str]:
    return {"pointer": pointer, "title": pointer_title(pointer)}


# ---- the explanation as text ------------------------------------------------------------------
def _wrap(text: str, indent: str, hang: int = 2) -> list[str]:
    return textwrap.wrap(
        " ".join(text.split()),
        WIDTH,
        initial_indent=indent,
        subsequent_indent=" " * (len(indent) + hang),
        break_on_hyphens=False,
    )


def tree_lines(node: dict[str, Any], indent: str, paint: Palette = PLAIN) -> list[str]:
    """A condition tree: `✓ all of:` groups with their items beneath, each sentence with its mark."""
    mark = _mark(node["met"], paint)
    if node["kind"] == "condition":
        lines = _wrap(f"{mark} {node['text']}", indent)
        if node.get("how"):
            lines += _wrap(node["how"], indent + "    ")
        if node.get("decided_without"):
            names = ", ".join(pointer_title(p) for p in node["decided_without"])
            lines += _wrap(
                f"decided whatever the value of {names} (any value consistent with the rest of the record)",
                indent + "    ",
            )
        for choice in node.get("choices", []):
            lines += _wrap(f"a choice the review does not make: {choice}", indent + "    ")
        if "definition" in node:
            lines += _group_lines(node["definition"], indent + "    ", paint, "because ")
        return lines
    return _group_lines(node, indent, paint)


def _group_lines(node: dict[str, Any], indent: str, paint: Palette, lead: str = "") -> list[str]:
    if node["kind"] == "condition":
        return tree_lines(node, indent, paint)
    head = {"all": "all of:", "any": "any of:", "not": "not:"}[node["kind"]]
    lines = [f"{indent}{_mark(node['met'], paint)} {lead}{head}"]
    for item in node["items"]:
        lines += tree_lines(item, indent + "    ", paint)
    return lines


def _mark(met: bool | None, paint: Palette) -> str:
    return paint(MARK[met], {True: "ok", False: "fail", None: "warning"}[met])


EXACT_NOTE = (
    "decided although not everything is recorded: every value the missing inputs could take, "
    "given the rest of the record, gives this outcome"
)


def _why_lines(rule: dict[str, Any], paint: Palette) -> list[str]:
    root = rule["because"]
    if root.get("exact"):
        lead = "Why" if root["met"] else "Why not"
        lines = _wrap(f"{lead} ({EXACT_NOTE}):", "    ")
        for item in root["items"] if root["kind"] == "all" else [root]:
            lines += tree_lines(item, "      ", paint)
        return lines
    if root["kind"] == "all":
        head = {
            True: "Why (all of these hold):",
            False: "Why not (all of these are needed):",
            None: "Not decided (all of these are needed):",
        }
        lines = [f"    {head[root['met']]}"]
        for item in root["items"]:
            lines += tree_lines(item, "      ", paint)
        return lines
    return ["    Why:"] + tree_lines(root, "      ", paint)


def rule_lines(rule: dict[str, Any], paint: Palette, full: bool) -> list[str]:
    symbol = {"warning": "⚠", "advice": "•", "info": "ℹ", "out_of_scope": "○", "caveat": "!"}.get(rule["kind"], "•")
    if rule["section"] == "not_fired":
        symbol = "✗"
    lines = _wrap(f"{symbol} {rule['title']}", "  ")
    signed = "signed off" if rule["status"] == "active" else f"{rule['status']}, not signed off"
    lines.append(paint(f"    {rule['id']} v{rule['version']} · {signed}", "muted"))
    if full:
        lines += _wrap(rule["says"], "    ", 0)
        if rule.get("caveats"):
            lines += _wrap(
                f"Caveat: {', '.join(rule['caveats'])} (below): the evidence may not apply to this patient.", "    "
            )
        shown = [t for t in rule.get("shown", []) if not t.startswith("unit of ")]
        if shown:
            lines += _wrap(f"Recorded: {'; '.join(shown)}.", "    ")
        if rule.get("qualifies"):
            lines += _wrap(f"Qualifies {', '.join(rule['qualifies'])}; rests on {rule['rests_on']}.", "    ")
        for caveat in rule.get("unchecked_caveats", []):
            lines += _wrap(
                f"Not checked whether the evidence applies ({lower_first(caveat['title'])}, {caveat['id']}): "
                f"record {_record_text(caveat['record'])}.",
                "    ",
            )
    lines += _why_lines(rule, paint)
    if rule.get("decided_without"):
        names = ", ".join(r["title"] for r in rule["decided_without"])
        lines += _wrap(
            f"decided whatever the value of {names} (any value consistent with the rest of the record)", "      "
        )
    if full:
        for cite in rule["citations"]:
            lines += _wrap(f'Source ({cite["sentence"]}): "{cite["quote"]}"', "    ")
        if rule["interpretation"]:
            lines.append("    How the source was read:")
            for note in rule["interpretation"]:
                lines += _wrap(f"- {note}", "      ")
    return lines


def _record_text(items: list[dict[str, str]], sources: dict[str, Any] | None = None) -> str:
    """What to record; for FHIR input, why the map left each of them empty."""
    why = sources or {}
    return "; ".join(f"{item['title']} ({item['pointer']}{_why_empty(why.get(item['pointer']))})" for item in items)


def _heading_status(doc: dict[str, Any]) -> str:
    """The status in the heading; out of scope with the knowledge base's reason for this patient
    (a cause the site leaves out by local policy is not what the review's title excludes)."""
    if doc["status"] == "out_of_scope" and doc.get("scope_text"):
        return f"{doc['status_text']} ({doc['scope_text']})"
    return str(doc["status_text"])


def explain_text(doc: dict[str, Any], show_all: bool = False, paint: Palette = PLAIN) -> str:
    """The explanation for a clinician (`explanation()`'s output); `show_all` unfolds the rules
    that do not apply."""
    doc = printable(doc)  # ids, keys and values from the record reach a terminal
    lines = [
        paint(f"Patient {patient_label(doc.get('patient_id'))}: {_heading_status(doc)}", "heading")
        + (f" ({doc['scope_text']})" if doc["status"] == "evaluated" and doc.get("scope_text") else ""),
        paint(f"  decision {doc['decision_id']}", "muted"),
    ]
    if doc.get("from_result"):
        lines += [paint(line, "muted") for line in _wrap(FROM_RESULT, "  ")]
    scope_doc = doc.get("scope") or {}
    if doc["status"] == "evaluated":  # said once here, not under every rule
        for choice in scope_doc.get("choices", []):
            lines += _wrap(f"scope rests on a choice the review does not make: {choice}", "  ")
    rules = doc["rules"]
    fired = [r for r in rules if r["section"] not in ("not_fired", "undetermined")]
    if any(r["status"] != "active" for r in fired):
        lines.append(paint(f"{DRAFT_BANNER}: the rules below are drafts.", "warning"))
    if doc["problems"]:
        lines.append(paint("PROBLEMS WITH THE RECORD", "heading"))
        for problem in doc["problems"]:
            pointer = problem.get("pointer")  # named once: most messages already start with it
            where = f"{pointer}: " if pointer and not str(problem["message"]).startswith(f"{pointer}:") else ""
            hint = f" (hint: {problem['hint']})" if problem.get("hint") else ""
            lines += _wrap(f"{where}{problem['message']}{hint}", "  ")
    scope = doc.get("scope")
    if scope is not None and doc["status"] == "scope_undetermined":
        lines += ["", paint("SCOPE: cannot tell whether the review applies", "heading")]
        lines += _wrap(
            f"The review applies when {lower_first(scope['covers'])}; this record does not establish it:", "  "
        )
        lines += _group_lines(scope["because"], "    ", paint)
        if scope["record"]:
            lines += _wrap(f"To decide, record: {_record_text(scope['record'], doc.get('sources'))}", "  ")
    for kind, heading in SECTIONS:
        chosen = [r for r in fired if r["section"] == kind]
        if chosen:
            lines += ["", paint(f"{heading} ({len(chosen)})", "heading")]
            for rule in chosen:
                lines += rule_lines(rule, paint, full=True)
    undetermined = [r for r in rules if r["section"] == "undetermined" and doc["status"] == "evaluated"]
    if undetermined:
        lines += ["", paint(f"UNDETERMINED: record these to decide ({len(undetermined)})", "heading")]
        for rule in undetermined:
            lines += _wrap(f"? {rule['title']} ({rule['id']})", "  ")
            if rule["record"]:
                lines += _wrap(f"record: {_record_text(rule['record'], doc.get('sources'))}", "    ")
            if show_all:
                lines += _why_lines(rule, paint)
    if doc["status"] == "evaluated" and not fired and not undetermined:
        lines += ["", "No recommendation: this source gives no recommendation for this patient."]
    notes = {(r["evidence"]["sentence"], r["evidence"]["quote"]) for r in fired if r["kind"] in ("advice", "warning")}
    for sentence, quote in sorted(notes):  # each rule's evidence note, from the knowledge base
        lines += [""] + _wrap(f'Evidence ({sentence}): the review says "{quote}".', "")
    rest = [
        r for r in rules if r["section"] == "not_fired" or (r["section"] == "undetermined" and r not in undetermined)
    ]
    if rest:
        if show_all:
            lines += ["", paint(f"DO NOT APPLY TO THIS PATIENT ({len(rest)})", "heading")]
            for rule in rest:
                lines += rule_lines(rule, paint, full=False)
        else:
            names = ", ".join(r["id"] for r in rest)
            what = {
                "out_of_scope": f"{len(rest)} other rules are not applied outside the review's scope",
                "scope_undetermined": f"no rule is applied while the scope is not established ({len(rest)} rules)",
            }.get(doc["status"], f"{len(rest)} rules do not apply to this patient")
            lines += [""] + _wrap(f"{what[0].upper()}{what[1:]} ({names}); --all shows why.", "")
    return "\n".join(lines)


MISSING_TEXT = {
    "no_resource": "no resource for it",
    "unit_not_convertible": "a unit the map cannot convert",
    "not_a_value": "the latest value is not a number the map can read",
    "date_not_precise": "a result with no date, or none to the day, so it may be the latest",
    "date_not_readable": "a result or order whose date (or period) cannot be read, so it may be the latest "
    "(or current)",
    "out_of_range": "a value outside what the record allows",
    "dose_not_computable": "a dose that cannot be computed from the instructions",
    "concurrent_orders": "more than one current order of the drug, whose doses may or may not add up",
    "orders_only": "only orders of drugs that do not settle it (no order is not 'none')",
    "ambiguous": "ambiguous (the resources disagree, or cannot be told apart)",
}


def _why_empty(entry: Any) -> str:
    if isinstance(entry, dict) and "missing" in entry:
        return f" (FHIR: {MISSING_TEXT.get(entry['missing'], entry['missing'])})"
    return ""


def sources_lines(result: dict[str, Any], carried: list[str] | None = None) -> list[str]:
    """FHIR input: where each value came from, and why each empty field is empty. `carried`
    names the parts a stored result brought with it: re-deriving the decision did not redo the
    conversion, so they are said to be carried as recorded (as replay and trace say)."""
    result = printable(result)  # resource ids and codes come from the input
    sources = result.get("sources")
    if not isinstance(sources, dict):
        return []
    conversion = result["decision"].get("fhir") or {}
    head = "Data from FHIR"
    if conversion:
        head += f" (evaluation date {conversion['as_of']}, map {conversion['map']['version']})"
    lines = [head + ":"] + (_wrap(carried_note(carried), "  ") if carried else [])
    empty: dict[str, list[str]] = {}
    for pointer, entry in sources.items():
        if "missing" in entry:
            empty.setdefault(entry["missing"], []).append(pointer)
            continue
        when = f", {entry['effective']}" if entry.get("effective") else ""
        others = f" (+{len(entry['others'])} more)" if entry.get("others") else ""
        what = f"{entry['resourceType']}/{entry['id']}" if entry.get("id") else str(entry["resourceType"])
        lines.append(f"  {pointer} ← {what}{others} [{entry.get('code')}{when}]")
    for reason, pointers in empty.items():
        lines += _wrap(", ".join(pointers), f"  empty, {MISSING_TEXT.get(reason, reason)}: ")
    return lines + set_aside_lines(result.get("set_aside"))


def set_aside_lines(items: Any) -> list[str]:
    """FHIR input: each resource the conversion did not use, where it is, and why."""
    if not isinstance(items, list) or not items:
        return []
    lines = [f"Set aside ({len(items)}):"]
    for item in items:
        where = ", ".join(str(item[k]) for k in ("entry", "origin", "field") if item.get(k))
        lines += _wrap(item["message"], f"  {where}: " if where else "  ")
    return lines

"""CDS Hooks renderings: a card's Markdown detail, and the decision-log reports.

A card's detail is what a clinician reads before acting: the advice, the quote and the whole
sentence it rests on, every value the rule used with the FHIR resource it came from, the evidence
note, and the ids an auditor needs (decision, knowledge-base fingerprint). Values from the EHR
are escaped, so a code or an id cannot inject Markdown or HTML into the EHR's card display.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fsgs_kb.engine.report.audit import differs_text
from fsgs_kb.engine.report.mdtext import md_code, md_text
from fsgs_kb.engine.report.text import printable

REASON_WORDS = {
    "no_resource": "no matching resource was sent",
    "unit_not_convertible": "a value was found in a unit that cannot be converted",
    "not_a_value": "the latest value sent is not a number that can be read",
    "date_not_precise": "a result was sent with no date or no day in its date, so it may be the latest",
    "date_not_readable": "a result or order was sent whose date cannot be read (or whose period ends before "
    "it starts), so it may be the latest (or the current order)",
    "out_of_range": "the value found is outside what the record can hold (an implausible value)",
    "dose_not_computable": "the order's dosage is not structured enough to compute a daily dose",
    "concurrent_orders": "more than one current order of the drug was sent, and whether their doses add up "
    "or one replaces the other is not stated",
    "orders_only": "orders were sent, but of drugs that do not settle it, and no order of a drug does not mean "
    "the patient never took it",
    "ambiguous": "the resources sent disagree or cannot be placed in time",
}
MAX_LISTED = 20  # set-aside resources a card lists one by one
ASIDE_WORDS = {  # why a resource was not used, in a few words (engine/fhir/setaside.py REASONS)
    "not_a_resource": "an entry with no resource",
    "too_deep": "nested too deep",
    "not_this_patient": "another patient",
    "focus_not_the_patient": "about someone or something else",
    "modifier": "a modifier",
    "do_not_perform": "an order not to perform",
    "entered_in_error": "entered in error",
    "duplicate_conflict": "conflicting duplicates",
    "not_confirmed": "a diagnosis not confirmed",
    "status_not_usable": "not a final result",
    "medication_status_not_usable": "no treatment known to be given",
    "medication_intent_not_usable": "an order only proposed or planned",
    "medication_version_mismatch": "another version of its Medication",
    "medication_not_identified": "a drug that cannot be told",
    "choice_conflict": "two values where one is allowed",
    "unit_not_convertible": "a unit not convertible",
    "not_a_value": "not a value",
    "date_not_readable": "a date or period that cannot be read",
    "date_not_precise": "no date to the day",
    "out_of_range": "an implausible value",
    "dose_not_computable": "no computable dose",
    "concurrent_orders": "concurrent orders of one drug",
}


def md(value: Any) -> str:
    """Text from the EHR or the record, safe inside Markdown (one line, specials escaped)."""
    return md_text(value, markup=True)


def code(value: Any) -> str:
    """Text inside a Markdown code span (no escapes apply there; backticks cannot appear)."""
    return md_code(value)


def provenance_text(prov: dict[str, Any] | None) -> str:
    """Where one record value came from, in words."""
    if not prov:
        return "not read from FHIR"
    if "missing" in prov:
        read = [md(o.get("resourceType")) + "/" + md(o.get("id")) for o in prov.get("orders") or []]
        return (
            "not available: "
            + REASON_WORDS.get(prov["missing"], md(prov["missing"]))
            + (f" (read: {', '.join(read)})" if read else "")
        )
    where = f"{md(prov.get('resourceType'))}/{md(prov.get('id'))}"
    extra = [md(prov["code"])] if prov.get("code") else []
    extra += [f"effective {md(prov['effective'])}"] if prov.get("effective") else []
    extra += [md(prov["note"])] if prov.get("note") else []
    others = prov.get("others") or []
    extra += [f"with {', '.join(md(o.get('resourceType')) + '/' + md(o.get('id')) for o in others)}"] if others else []
    return where + (f" ({'; '.join(extra)})" if extra else "")


def caveat_source(prov: dict[str, Any]) -> str:
    """Where a caveat comes from: the review's sentence, a cited publication (verified or not), or local policy."""
    if prov.get("kind") == "source":
        return f"the review, {md(prov.get('sentence'))}: “{md(prov.get('quote'))}”"
    if prov.get("kind") == "cited":
        checked = "verified" if prov.get("verified") else "NOT verified against the primary document"
        return f"cited: {md(prov.get('reference'))}, {checked}"
    return f"local policy: {md(prov.get('rationale'))}"


def _footer(detail: dict[str, Any]) -> str:
    kb = detail["kb"]
    return (
        f"Decision `{detail['decision_id']}` · knowledge base {md(kb['id'])} {md(kb['version'])} · "
        f"fingerprint `{kb['fingerprint']}`"
    )


def rule_detail(detail: dict[str, Any]) -> str:
    """The Markdown detail of one rule's card."""
    signed = "signed off" if detail["status"] == "active" else "DRAFT, not signed off"
    lines = [f"**{md(detail['kind']).capitalize()}** ({signed}): {md(detail['says'])}", ""]
    for cite in detail["citations"]:
        lines += [
            f"> “{md(cite['quote'])}” ({md(detail['source_label'])}, sentence {md(cite['sentence'])})",
            ">",
            f"> The whole sentence: “{md(cite['text'])}”",
            "",
        ]
    for caveat in detail.get("caveats", []):
        lines += [f"**Caveat: {md(caveat['title'])}.** {md(caveat['says'])} ({caveat_source(caveat['provenance'])})"]
        shown = [
            f"{md(v.get('field') or v.get('derived'))} = {md(_number(v['value']))}{_unit(v)}" for v in caveat["shown"]
        ]
        lines += [f"Shown with it: {'; '.join(shown)}." if shown else "", ""]
    lines.append("**Values used**")
    lines += [f"- {md(text)}" for text in detail["values"]] or ["- none"]
    lines += [f"- {md(d['name'])} = {md(_number(d['value']))}{_unit(d)}: {md(d['how'])}" for d in detail["derived"]]
    lines += ["", "**Where the values came from**"]
    aside = detail.get("aside", {})
    for pointer, prov in detail["provenance"]:
        lines.append(f"- `{code(pointer)}`: {provenance_text(prov)}")
        lines += [f"  - sent but not used: {md(message)}" for message in aside.get(pointer, [])]
    if not detail["provenance"]:
        lines.append("- none")
    evidence = detail["evidence"]
    lines += [
        "",
        f"**Evidence note** ({md(evidence['sentence'])}): “{md(evidence['quote'])}”",
        "",
        _footer(detail),
    ]
    return "\n".join(lines)


def undetermined_detail(detail: dict[str, Any]) -> str:
    """The Markdown detail of the one card that says what to record."""
    if detail.get("scope_reason"):
        covers = detail.get("covers")
        lines = [
            (
                f"The review covers {md(covers)} only, and whether this patient has it cannot be told: "
                if covers
                else "Whether the review applies to this patient cannot be told: "
            )
            + f"{md(detail['scope_reason'])}. No rule of the review is applied until it can.",
            "",
        ]
    else:
        lines = [
            "These rules cannot be decided because the record lacks values they need. Record the values "
            "below in the EHR (as FHIR resources the service can read) to get their advice.",
            "",
        ]
    for item in detail["items"]:
        rules = ", ".join(md(r) for r in item["rules"])
        unused = "".join(f"; sent but not used: {md(message)}" for message in item.get("aside", []))
        title = item.get("title")
        named = f"**{md(item['label'])}**" + (f" ({md(title)})" if title else "")
        lines.append(f"- {named}, needed by {rules}: {md(item['where'])}; {provenance_text(item['prov'])}" + unused)
    if detail.get("absent"):
        lines += [
            "",
            "The EHR did not send these prefetch queries (this service never queries the FHIR server itself): "
            + ", ".join(f"`{code(k)}`" for k in detail["absent"]),
        ]
    lines += ["", _footer(detail)]
    return "\n".join(lines)


def no_data_detail(detail: dict[str, Any]) -> str:
    """The Markdown detail of the card saying a call brought no patient data at all."""
    lines = [
        "The service received no patient data for this call, so it cannot tell whether the review applies "
        "to this patient, nor assess anything the review says. It never queries the FHIR server itself "
        "(a `fhirAuthorization` is not used): the EHR must send the data as the prefetch the service's "
        "discovery document asks for. This is not a finding about the patient.",
    ]
    for key, heading in (("absent", "Not sent (or sent as an OperationOutcome)"), ("empty", "Sent as null (no data)")):
        if detail[key]:
            lines += ["", f"**{heading}**"]
            lines += [f"- `{code(k)}`: `{code(query)}`" for k, query in detail[key]]
    lines += ["", _footer(detail)]
    return "\n".join(lines)


def not_evaluated_detail(detail: dict[str, Any]) -> str:
    """The Markdown detail of the card saying the record could not be evaluated: no rule was
    checked, so the absence of advice says nothing. For an `invalid` record each problem by the
    value's clinical name, its pointer, what is wrong, the knowledge base's hint and the FHIR
    resource the value came from (what to correct in the EHR); for an `error` (a fault of the
    service, not of the data) only the error's code: its text is for the service log."""
    lines = [
        "The knowledge base could not evaluate this patient's record, so none of its rules was checked: "
        "the absence of other advice does not mean that nothing applies.",
        "",
    ]
    if detail["status"] == "error":
        codes = ", ".join(f"`{code(p['code'])}`" for p in detail["problems"]) or "none given"
        lines += [
            "The service failed while evaluating it (an internal error, not a problem of the patient's data; "
            f"error {codes}). The service's log has the details, under this call's hookInstance. Trying again "
            "later, or reporting it to the service's operators, is what can be done."
        ]
    else:
        lines += [
            "The record built from the EHR's data contradicts itself or holds a value it cannot take. "
            "Correcting these in the EHR lets it be evaluated:",
            "",
        ]
        for problem in detail["problems"]:
            named = f"**{md(problem['title'])}** (`{code(problem['pointer'])}`)" if problem["pointer"] else "The record"
            hint = f" Hint: {md(problem['hint'])}." if problem.get("hint") else ""
            came = f" From: {provenance_text(problem['prov'])}." if problem.get("prov") else ""
            lines.append(f"- {named}: {md(problem['message'])}.{hint}{came}")
    lines += ["", _footer(detail)]
    return "\n".join(lines)


def set_aside_detail(detail: dict[str, Any]) -> str:
    """The Markdown detail of the card that lists the resources sent but not used (the first
    MAX_LISTED of them: a card is read, and the decision log keeps them all)."""
    lines = [
        "These FHIR resources were sent but not used: no value of the advice rests on them. "
        "Each is named with where it is in the request and why it was not used.",
        "",
        *aside_lines(detail["items"]),
        "",
        _footer(detail),
    ]
    return "\n".join(lines)


def aside_lines(items: list[dict[str, Any]]) -> list[str]:
    """One Markdown list line per set-aside resource (its message: type/id and why; the field it
    was sent for; where it is in the request), the first MAX_LISTED of them."""
    lines = []
    for item in items[:MAX_LISTED]:
        where = [f"`{code(item[k])}`" for k in ("origin", "entry") if item.get(k)]
        field = f" (for `{code(item['field'])}`)" if item.get("field") else ""
        lines.append(f"- {md(item['message'])}{field}" + (f", at {where[0]}" if where else ""))
    if len(items) > MAX_LISTED:
        lines.append(f"- … and {len(items) - MAX_LISTED:,} more (the decision log lists them all)")
    return lines


def aside_words(items: list[dict[str, Any]]) -> str:
    """Why resources were set aside, in a few words each, once per reason (a card's summary)."""
    return ", ".join(dict.fromkeys(ASIDE_WORDS.get(item["reason"], item["reason"]) for item in items))


def order_not_checked_detail(detail: dict[str, Any]) -> str:
    """The Markdown detail of the card an order hook gives when no draft order it was sent could be
    checked: which drafts, where each is and why it could not be used. It says nothing else (no
    advice: nothing was evaluated), and its footer names the knowledge base but no decision."""
    count = len(detail["items"])
    these = "This draft order" if count == 1 else f"These {count} draft orders"
    kb = detail["kb"]
    lines = [
        f"{these} of {md(detail['drug'])}"
        + (f" (or whose drug cannot be told, and may be {md(detail['drug'])})" if detail.get("untold") else "")
        + " could not be checked against the knowledge base: "
        f"{'it was' if count == 1 else 'they were'} not evaluated, and no check of the order was made. "
        "Each is named with where it is in the request and why it could not be used.",
        "",
        *aside_lines(detail["items"]),
        "",
        f"Not evaluated · knowledge base {md(kb['id'])} {md(kb['version'])} · fingerprint `{kb['fingerprint']}`",
    ]
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{round(value, 2):g}"
    return str(value)


def _unit(derived: dict[str, Any]) -> str:
    return f" {md(derived['unit'])}" if derived.get("unit") and derived.get("value") is not None else ""


# ---- decision-log reports -------------------------------------------------------------------


def replay_log_text(kb: dict[str, str], reports: list[dict[str, Any]], counts: dict[str, int]) -> str:
    """`fsgs-kb replay --decision-log`: each decision that is not identical, then the totals. Every
    text from the log (an edited file can hold anything) has its control characters escaped
    (`printable`, as `feedback_text`), so a newline in a hookInstance cannot forge a line."""
    lines = []
    for r in printable(reports):
        where = f"row {r['row']} ({r['time']}, {r['service']}, hookInstance {r['hook_instance']})"
        if r["verdict"] == "changed":
            what = "; ".join(f"{c['rule']} {c['old']} → {c['new']}" for c in r.get("changes", []))
            lines.append(f"changed: {where}: {what or 'the same outcomes; ' + differs_text(r.get('differs', {}))}")
        elif r["verdict"] == "other_kb":
            lines.append(
                f"other knowledge base: {where} was decided by version {r['kb_version']} "
                f"({r['kb_fingerprint'][:12]}); not replayed"
            )
        elif r["verdict"] in ("unreadable", "input_missing"):
            lines.append(f"{r['verdict'].replace('_', ' ')}: {where}{': ' + r['problem'] if 'problem' in r else ''}")
    replayed = counts["identical"] + counts["changed"] + counts["input_missing"] + counts["unreadable"]
    share = f"{100 * counts['identical'] / replayed:.1f} %" if replayed else "n/a"
    lines.append(
        f"{len(reports):,} logged decisions; {replayed:,} replayed with {kb['id']} {kb['version']} "
        f"({kb['fingerprint'][:12]}): {counts['identical']:,} identical ({share}), {counts['changed']:,} changed"
        + (f", {counts['input_missing']:,} without input" if counts["input_missing"] else "")
        + (f", {counts['unreadable']:,} unreadable" if counts["unreadable"] else "")
        + f"; {counts['other_kb']:,} from another knowledge base (not replayed)"
        + f"; {counts['not_evaluated']:,} calls with nothing to evaluate"
    )
    return "\n".join(lines)


def _phrase(status: str) -> str:
    """An HTTP status's reason phrase (`Unauthorized`), for a report line; 499 is the proxies' own."""
    if status == "499":
        return "Client Closed Request"
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:
        return "(unknown status)"


def feedback_text(summary: dict[str, Any]) -> str:
    """`fsgs-kb feedback-report`: per rule and version, how its cards were received. Every text
    from the log (rule ids, reason codes and displays: what an EHR sent) is shown with its control
    characters escaped (`printable`), so a newline or an escape sequence cannot forge a line."""
    summary = printable(summary)
    lines = [
        f"{summary['decisions']:,} logged decisions; {summary['feedback']:,} feedback items: "
        f"{summary['duplicates']:,} duplicates ignored (the same card's same outcome counts once), "
        f"{summary['contradictory']:,} contradictory not counted"
    ]
    if summary.get("refused"):  # feedback calls the service turned away: nothing of them is counted above
        by_status = ", ".join(
            f"{status} {_phrase(status)} × {count:,}" for status, count in summary["refused_by_status"].items()
        )
        calls = "call" if summary["refused"] == 1 else "calls"
        lines.append(f"{summary['refused']:,} feedback {calls} refused, nothing of them counted ({by_status})")
    if not summary["rules"]:
        lines.append("no cards were sent")
    for item in summary["rules"]:
        answered = item["accepted"] + item["overridden"]
        share = f", {100 * item['overridden'] / answered:.0f} % overridden" if answered else ""
        odd = f"; {item['contradictory']:,} contradictory (not counted)" if item["contradictory"] else ""
        again = f" (sent in {item['sent']:,} calls)" if item.get("sent", item["cards"]) > item["cards"] else ""
        lines.append(
            f"{item['rule']} v{item['version']}: {item['cards']:,} card{'' if item['cards'] == 1 else 's'}{again}, "
            f"{answered:,} with feedback: "
            f"{item['accepted']:,} accepted, {item['overridden']:,} overridden{share}{odd}"
        )
        for reason in item["reasons"]:
            label = reason["display"] or reason["code"] or "no reason given"
            comments = f" ({reason['with_comment']} with a comment)" if reason["with_comment"] else ""
            lines.append(f"    overridden: {label} × {reason['count']}{comments}")
    return "\n".join(lines)

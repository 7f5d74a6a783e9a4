"""Cards: one per fired advice, warning or info rule, and one saying what to record.

A card never says more than its rule: the summary is the rule's title with the values that made it
fire, `DRAFT:` while the rule is not signed off; the detail carries the advice, the quoted source,
the values with the FHIR resource each came from (and any resource sent for that value but not
used, and why), and the ids to audit it. When the call gives any card and some resources sent were
not used (engine/fhir/setaside.py: another patient, a modifier, a preliminary result, a unit the
map cannot convert, …), one more `info` card lists those no value came from and those that would
have given a value a rule is waiting for, with where each is in the request and why; a chart the
service is otherwise silent on stays silent. Warnings are `warning`
and may be overridden with a reason; everything else is `info`; nothing is `critical`, and no card
suggests an order or acts on its own (no suggestions, no systemActions). Out of scope gives no
card. A card's uuid is derived from the decision id and the rule id, so the same decision always
shows the same cards and feedback links back to it. An order hook whose every cyclosporine draft
was set aside evaluates nothing and gets one `info` card saying the order could not be checked
(`order_not_checked`), its uuid derived from the call instead of a decision. A record that could not be
evaluated (`invalid`, `error`) gets one `info` card saying so and why (NOT_EVALUATED), never silence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsgs_kb.engine.evaluate.kleene import kleene_all, kleene_any
from fsgs_kb.engine.fhir import FhirMap
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.fields import pointer_title, pointer_titles
from fsgs_kb.engine.model import AllOf, Compare, Condition, Not, Rule
from fsgs_kb.engine.report.cds import (
    aside_words,
    no_data_detail,
    not_evaluated_detail,
    order_not_checked_detail,
    rule_detail,
    set_aside_detail,
    undetermined_detail,
)
from fsgs_kb.service.decisionlog import (
    NO_DATA,
    NOT_EVALUATED,
    ORDER_NOT_CHECKED,
    SET_ASIDE,
    UNDETERMINED,
    CardRow,
    card_uuid,
    offered_reasons,
)
from fsgs_kb.service.drafts import UNTOLD
from fsgs_kb.service.prefetch import Templates

RULE_SYSTEM = "urn:fsgs-kb:rule"
CARD_KINDS = ("advice", "warning", "info")
# statuses of a record no rule was checked on: each gets one card saying so (silence would read as
# "nothing to say", and a chart that had a warning would lose it over one conflicting value)
NOT_EVALUATED_STATUSES = ("invalid", "error")
RECORD_ID_TITLE = "patient record id"  # /id, which the record schema titles only "id"
SUMMARY_MAX = 139  # CDS Hooks: "<140 characters"


def _pointer(path: str) -> str:
    return "/" + path.replace(".", "/")


def _number(value: Any) -> str:
    text = f"{round(float(value), 2):g}"
    return text


def _fit(prefix: str, title: str, tail: str) -> str:
    """prefix + title + tail in at most SUMMARY_MAX characters, shortening the title first."""
    if len(prefix) + len(tail) > SUMMARY_MAX // 2:
        tail = tail[: SUMMARY_MAX // 2 - len(prefix) - 2] + "…)"
    room = SUMMARY_MAX - len(prefix) - len(tail)
    if len(title) > room:
        title = title[: room - 1].rstrip() + "…"
    return prefix + title + tail


def _listed(names: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def scope_summary(prefix: str, scope: dict[str, Any]) -> str:
    """The summary of the card saying the scope cannot be told, as one sentence: the inputs that
    would decide it by their clinical names (their pointers are in the detail), or, when none is
    missing, the knowledge base's reason (a value recorded that the scope cannot take)."""
    head = f"{prefix}Cannot tell whether the review applies: "
    missing = [str(p) for p in scope.get("missing") or []]
    if not missing:
        return _fit(head, str(scope["reason"]), "")
    names = list(dict.fromkeys(pointer_title(p) for p in missing))
    text = head + "record " + _listed(names)
    if len(text) > SUMMARY_MAX:
        text = f"{head}record the {len(names)} values named in the detail"
    return text


def fired_values(entry: dict[str, Any], behind: list[dict[str, Any]] | None = None) -> list[str]:
    """The numbers that made a rule fire, with units, in condition order; `behind`: the
    comparisons that made its true derived values true (`CardMaker.behind`), after them."""
    out: list[str] = []
    for leaf in [*entry.get("conditions", []), *(behind or [])]:
        actual = leaf.get("actual")
        if leaf.get("result") is True and isinstance(actual, (int, float)) and not isinstance(actual, bool):
            text = f"{_number(actual)} {leaf['unit']}" if leaf.get("unit") else _number(actual)
            if text not in out:
                out.append(text)
    return out


def summary(entry: dict[str, Any], behind: list[dict[str, Any]] | None = None) -> str:
    prefix = "DRAFT: " if entry["status"] != "active" else ""
    values = fired_values(entry, behind)
    return _fit(prefix, entry["title"], f" ({', '.join(values)})" if values else "")


@dataclass
class Made:
    """The cards of one hook call, and their rows for the decision log."""

    cards: list[dict[str, Any]]
    rows: list[CardRow]


class CardMaker:
    """Per knowledge base: what each rule reads, the review's label, where the handbook is."""

    def __init__(self, kb: KnowledgeBase, fmap: FhirMap, templates: Templates, allow_drafts: bool, handbook: str):
        self.kb = kb
        self.fmap = fmap
        self.templates = templates
        self.allow_drafts = allow_drafts
        self.handbook = handbook
        source = kb.model.source
        rec = source.record
        self.sentences = source.sentences
        self.label = (
            f"{rec['title']} ({rec.get('journal_abbreviation', rec.get('journal', ''))} {rec.get('year', '')};"
            f"{rec.get('volume', '')}({rec.get('issue', '')}):{rec.get('pages', '')})"
        )
        self.url = f"https://doi.org/{rec['doi']}" if rec.get("doi") else str(rec.get("url", ""))
        self.rule_fields = {r.id: self._fields_of(r) for r in kb.model.rules.values()}

    def _fields_of(self, rule: Rule) -> list[str]:
        """The map fields a rule reads, directly or through derived values, as JSON pointers."""
        model = self.kb.model
        paths = [leaf.name for leaf in walk(rule.when) if leaf.source == "field"]
        for name in self.kb.evaluation.rule_derived[rule.id]:
            spec = model.derived[name]
            conds = ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]
            paths += [leaf.name for c in conds for leaf in walk(c) if leaf.source == "field"]
            exprs = ([spec.value] if spec.value else []) + [e for _, e in spec.cases]
            paths += [r.name for e in exprs for r in expression_refs(e) if r.source == "field"]
        fields = [m for m in self.fmap.fields if any(p == m or p.startswith(m + ".") for p in paths)]
        return [_pointer(m) for m in fields]

    def visible(self, entry: dict[str, Any]) -> bool:
        return self.allow_drafts or entry["status"] == "active"

    def make(
        self,
        result: dict[str, Any],
        prov: dict[str, Any],
        *,
        patient_view: bool,
        absent: list[str],
        set_aside: list[dict[str, Any]] | None = None,
        empty: list[str] | None = None,
    ) -> Made:
        """The cards of one evaluated call; `set_aside`: the resources the conversion did not use;
        `empty`: None when the prefetch held any resource, else the keys sent as null (a call
        that brought no patient data at all, which is said rather than answered with silence)."""
        made = Made([], [])
        aside = set_aside or []
        by_field: dict[str, list[str]] = {}
        for item in aside:
            if item.get("field"):
                by_field.setdefault(item["field"], []).append(item["message"])
        if result["status"] in NOT_EVALUATED_STATUSES:
            self._not_evaluated_card(made, result, prov)
        if result["status"] == "evaluated":
            for entry in result["rules"]:
                if entry["outcome"] == "fired" and entry["kind"] in CARD_KINDS and self.visible(entry):
                    self._rule_card(made, entry, result, prov, by_field)
        if empty is not None and result["status"] in ("evaluated", "scope_undetermined"):
            self._no_data_card(made, result, absent, empty)
        elif patient_view and result["status"] in ("evaluated", "scope_undetermined"):
            self._undetermined_card(made, result, prov, absent, by_field)
        listed = self._worth_listing(result, prov, aside)
        if made.cards and listed:
            self._set_aside_card(made, result, listed)
        return made

    def _worth_listing(
        self, result: dict[str, Any], prov: dict[str, Any], aside: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The set-aside resources the card of their own lists: those no value came from, and those
        that would have given a value a rule (or the scope) is waiting for. Not, say, a stopped
        order whose dose cannot be computed: it gave the status, no rule waits for its dose, and it
        is shown under the dose on any card that shows the dose."""
        used = set()
        for p in prov.values():
            for named in [p, *(p.get("others") or [])]:
                if isinstance(named.get("id"), str):
                    used.add((named.get("resourceType"), named["id"]))
        if result["status"] == "scope_undetermined":
            waiting = set(result["scope"]["missing"])
        else:
            entries = [e for e in result["rules"] if e["outcome"] == "undetermined" and self.visible(e)]
            waiting = {pointer for e in entries for pointer in e["missing"]}

        def awaited(field: str | None) -> bool:
            return field is not None and any(
                field == w or field.startswith(w + "/") or w.startswith(field + "/") for w in waiting
            )

        def draft(item: dict[str, Any]) -> bool:  # a draft order set aside was never used, whatever its id
            return str(item.get("origin", "")).startswith("/context/draftOrders/")

        return [i for i in aside if (i["resourceType"], i["id"]) not in used or awaited(i.get("field")) or draft(i)]

    def behind(self, entry: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
        """The comparisons that made a fired rule's true derived values true, from the input the
        result holds: "blood pressure above target" is true because the percentile is 95 (the
        branch that held), which the card's summary names (issue 15: the finding with its
        values; review 5). Empty where the result holds no input."""
        patient = result.get("decision", {}).get("input")
        names = [
            leaf["derived"]
            for leaf in entry.get("conditions", [])
            if leaf.get("result") is True and leaf.get("actual") is True and leaf.get("derived")
        ]
        if not isinstance(patient, dict) or not names:
            return []
        evaluation = self.kb.evaluation
        values = evaluation.values_of(patient)
        known = evaluation.evaluator.derive(values)
        out: list[dict[str, Any]] = []
        for name in names:
            condition = self.kb.model.derived[name].condition
            if condition is not None:
                outcome = evaluation.evaluator.condition(condition, values, known)
                out += _held(condition, iter(outcome.leaves))[1]
        return out

    def _source(self, code: str, display: str) -> dict[str, Any]:
        return {
            "label": self.label,
            "url": self.url,
            "topic": {"system": RULE_SYSTEM, "code": code, "display": display},
        }

    def _rule_card(
        self,
        made: Made,
        entry: dict[str, Any],
        result: dict[str, Any],
        prov: dict[str, Any],
        by_field: dict[str, list[str]],
    ) -> None:
        decision = result["decision"]
        pointers = self.rule_fields.get(entry["id"], [])
        detail = {
            "status": entry["status"],
            "kind": entry["kind"],
            "says": entry["says"],
            "source_label": self.label,
            "citations": [{**c, "text": self.sentences.get(c["sentence"], "")} for c in entry["citations"]],
            "caveats": caveats_of(result, entry),
            "values": [leaf["text"] for leaf in entry["conditions"] if leaf.get("result") is not None],
            "derived": [d for d in entry["derived"] if d["value"] is not None],
            "provenance": [(p, prov.get(p)) for p in pointers],
            "aside": {p: by_field[p] for p in pointers if p in by_field},
            "evidence": entry["evidence"],
            "decision_id": decision["decision_id"],
            "kb": decision["kb"],
        }
        card: dict[str, Any] = {
            "uuid": card_uuid(decision["decision_id"], entry["id"]),
            "summary": summary(entry, self.behind(entry, result)),
            "indicator": "warning" if entry["kind"] == "warning" else "info",
            "detail": rule_detail(detail),
            "source": self._source(entry["id"], entry["title"]),
            "links": [
                {
                    "label": f"Handbook: {entry['id']}",
                    "url": f"{self.handbook}rules/{entry['id']}.html",
                    "type": "absolute",
                }
            ],
        }
        if offered_reasons(card["indicator"]):
            card["overrideReasons"] = offered_reasons(card["indicator"])
        made.cards.append(card)
        made.rows.append(CardRow(card["uuid"], entry["id"], entry["version"], card["indicator"]))

    def _undetermined_card(
        self,
        made: Made,
        result: dict[str, Any],
        prov: dict[str, Any],
        absent: list[str],
        by_field: dict[str, list[str]],
    ) -> None:
        needs: dict[str, list[str]] = {}
        if result["status"] == "scope_undetermined":
            covers = self.kb.model.scope_covers
            fsgs_known = any("missing" not in prov[p] for p in prov if p.startswith("/fsgs/"))
            fsgs_keys = {k for m in self.fmap.fields if m.startswith("fsgs.") for k in self.templates.keys_of_field(m)}
            if not fsgs_known and not fsgs_keys & set(absent):
                # the EHR answered the diagnosis queries and nothing says this patient has FSGS at
                # all: no card for every chart opened. (Queries it did not send are not an answer.)
                return
            served = self._served()
            if not served:
                return
            for pointer in result["scope"]["missing"]:
                needs.setdefault(pointer, []).append(f"scope ({covers})" if covers else "scope")
            drafts = any(r.status != "active" for r in served)
        else:
            entries = [e for e in result["rules"] if e["outcome"] == "undetermined" and self.visible(e)]
            for entry in entries:
                for pointer in entry["missing"]:
                    needs.setdefault(pointer, []).append(entry["id"])
            drafts = any(e["status"] != "active" for e in entries)
        if not needs and result["status"] != "scope_undetermined":
            return  # (an undetermined scope is said even when nothing is missing: a recorded
            # value the scope cannot take, as a diagnosis that is not biopsy-proven, is its reason)
        items = [self._need(pointer, rules, prov, by_field) for pointer, rules in needs.items()]
        feeding = {k for item in items for k in item.pop("keys")}
        rules = sorted({r for rs in needs.values() for r in rs})
        decision = result["decision"]
        detail: dict[str, Any] = {
            "items": items,
            "absent": [k for k in absent if k in feeding],
            "decision_id": decision["decision_id"],
            "kb": decision["kb"],
        }
        count = f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
        prefix = "DRAFT: " if drafts else ""
        if result["status"] == "scope_undetermined":
            reason = str(result["scope"]["reason"])
            text = scope_summary(prefix, result["scope"])
            detail["scope_reason"] = reason
            detail["covers"] = self.kb.model.scope_covers
        else:
            text = _fit(prefix, f"Record {', '.join(item['label'] for item in items)}", f" to decide {count}")
        source = self._source(UNDETERMINED, "Values the knowledge base needs")
        uuid = card_uuid(decision["decision_id"], UNDETERMINED)
        self._info(made, uuid, UNDETERMINED, text, undetermined_detail(detail), source, handbook_link=True)

    def _not_evaluated_card(self, made: Made, result: dict[str, Any], prov: dict[str, Any]) -> None:
        """One `info` card when the record could not be evaluated (`invalid`: it contradicts itself
        or holds a value it cannot take; `error`: the service failed): no rule was checked, which
        silence would hide. Its summary and detail say why (the errors by clinical name, pointer
        and the FHIR resource each value came from; for an error only its code, the rest being
        the service log's). `info`, as the card saying an order could not be checked: it is no
        finding about the patient, and a `warning` would offer override reasons ("clinical
        judgement for this patient") that mean nothing for a record the service could not read.
        None when no rule is served (the service then gives no cards at all)."""
        if not self._served():
            return
        decision = result["decision"]
        problems = []
        for error in result["errors"]:
            pointer = str(error.get("pointer") or "")
            message = str(error.get("message", ""))
            if pointer and message.startswith(pointer + ": "):
                message = message[len(pointer) + 2 :]
            title = RECORD_ID_TITLE if pointer == "/id" else pointer_title(pointer)
            fed = [p for p in prov if pointer == p or pointer.startswith(p + "/")]
            problems.append(
                {
                    "code": error.get("code", ""),
                    "pointer": pointer,
                    "title": title,
                    "message": message.rstrip("."),
                    "hint": str(error["hint"]).rstrip(".") if error.get("hint") else None,
                    "prov": prov[max(fed, key=len)] if fed else None,
                }
            )
        if result["status"] == "error":
            why = "an internal error of the service"
        else:
            first = problems[0] if problems else {"title": "", "message": "a value it cannot take"}
            said = f"{first['title']}: {first['message']}" if first["title"] else first["message"]
            more = f"; {len(problems) - 1} more" if len(problems) > 1 else ""
            why = said + more
        text = _fit("", f"Record could not be evaluated, no rule was checked: {why}", "")
        detail = {
            "status": result["status"],
            "problems": problems,
            "decision_id": decision["decision_id"],
            "kb": decision["kb"],
        }
        source = self._source(NOT_EVALUATED, "Record could not be evaluated")
        uuid = card_uuid(decision["decision_id"], NOT_EVALUATED)
        self._info(made, uuid, NOT_EVALUATED, text, not_evaluated_detail(detail), source, handbook_link=True)

    def _served(self) -> list[Rule]:
        """The rules whose cards this service shows."""
        return [r for r in self.kb.model.rules.values() if self.allow_drafts or r.status == "active"]

    def _no_data_card(self, made: Made, result: dict[str, Any], absent: list[str], empty: list[str]) -> None:
        """One `info` card when the prefetch held no resource at all: which queries were not sent
        and which were sent as null. The service never queries the FHIR server itself, so a
        `fhirAuthorization` does not bring the data; silence would read as "nothing to say"."""
        if not self._served():
            return
        decision = result["decision"]
        queries = self.templates.prefetch()
        total = len(queries)
        counts = ((len(absent), "not sent"), (len(empty), "null"), (total - len(absent) - len(empty), "empty"))
        said = ", ".join(f"{n} {what}" for n, what in counts if n)
        text = f"No patient data received to assess: of {total} prefetch queries, {said}"
        detail = {
            "absent": [(k, queries.get(k, "")) for k in absent],
            "empty": [(k, queries.get(k, "")) for k in empty],
            "decision_id": decision["decision_id"],
            "kb": decision["kb"],
        }
        source = self._source(NO_DATA, "No patient data received")
        uuid = card_uuid(decision["decision_id"], NO_DATA)
        self._info(made, uuid, NO_DATA, text, no_data_detail(detail), source, handbook_link=True)

    def _need(
        self, pointer: str, rules: list[str], prov: dict[str, Any], by_field: dict[str, list[str]]
    ) -> dict[str, Any]:
        path = pointer.lstrip("/").replace("/", ".")
        fields = [m for m in self.fmap.fields if m == path or m.startswith(path + ".") or path.startswith(m + ".")]
        where = "; ".join(dict.fromkeys(self._where(m) for m in fields)) or "not read from FHIR"
        found = next((prov[_pointer(m)] for m in fields if _pointer(m) in prov), None)
        keys = [k for m in fields for k in self.templates.keys_of_field(m)]
        aside = [message for m in fields for message in by_field.get(_pointer(m), [])]
        title = pointer_titles().get(pointer)
        return {
            "label": path,
            "title": title,
            "rules": rules,
            "where": where,
            "prov": found,
            "keys": keys,
            "aside": aside,
        }

    def _set_aside_card(self, made: Made, result: dict[str, Any], aside: list[dict[str, Any]]) -> None:
        """One `info` card naming the resources sent but not used, where each is and why."""
        decision = result["decision"]
        count = len(aside)
        head = f"{count} FHIR resource{'s' if count != 1 else ''} sent {'were' if count != 1 else 'was'} not used"
        why = aside_words(aside)
        detail = set_aside_detail({"items": aside, "decision_id": decision["decision_id"], "kb": decision["kb"]})
        source = self._source(SET_ASIDE, "FHIR resources sent but not used")
        self._info(
            made, card_uuid(decision["decision_id"], SET_ASIDE), SET_ASIDE, _fit("", head, f" ({why})"), detail, source
        )

    def order_not_checked(self, call_id: str, drug: str, aside: list[dict[str, Any]]) -> Made:
        """An order hook whose every draft order of the drug was set aside (another patient's,
        cancelled, only proposed, …): one `info` card saying the order could not be checked, each
        draft with where it is and why, and nothing else (no advice: nothing was evaluated). None
        when no draft was set aside (no order of the drug: not this knowledge base's business) or
        no rule is served (the service gives no cards at all). `call_id` stands for the decision id
        in the card's uuid (there is no decision)."""
        made = Made([], [])
        if not aside or not any(self.allow_drafts or r.status == "active" for r in self.kb.model.rules.values()):
            return made
        count = len(aside)
        untold = any(a.get("reason") in UNTOLD for a in aside)  # may be the drug: not named as it
        named = "" if untold else f" {drug}"
        head = (
            f"Draft{named} order could not be checked"
            if count == 1
            else f"{count} draft{named} orders could not be checked"
        )
        kb = {"id": self.kb.id, "version": self.kb.version, "fingerprint": self.kb.fingerprint}
        source = {
            "label": f"fsgs-kb: knowledge base {self.kb.id} {self.kb.version}",
            "url": f"{self.handbook}index.html",
            "topic": {"system": RULE_SYSTEM, "code": ORDER_NOT_CHECKED, "display": "Draft order not checked"},
        }
        summary = _fit("", head, f" ({aside_words(aside)})")
        detail = order_not_checked_detail({"items": aside, "drug": drug, "untold": untold, "kb": kb})
        self._info(made, card_uuid(call_id, ORDER_NOT_CHECKED), ORDER_NOT_CHECKED, summary, detail, source)
        return made

    def _info(
        self,
        made: Made,
        uuid: str,
        kind: str,
        summary: str,
        detail: str,
        source: dict[str, Any],
        handbook_link: bool = False,
    ) -> None:
        """One `info` card of no rule (UNDETERMINED, NO_DATA, SET_ASIDE, ORDER_NOT_CHECKED, NOT_EVALUATED) and its
        decision-log row, in one shape."""
        card: dict[str, Any] = {
            "uuid": uuid,
            "summary": summary,
            "indicator": "info",
            "detail": detail,
            "source": source,
        }
        if handbook_link:
            card["links"] = [{"label": "Handbook", "url": f"{self.handbook}index.html", "type": "absolute"}]
        made.cards.append(card)
        made.rows.append(CardRow(uuid, kind, self.kb.version, "info"))

    def _where(self, path: str) -> str:
        """Which FHIR resources feed a field, in a few words."""
        parts = []
        for src in self.fmap.fields[path]["sources"]:
            kind = src["kind"]
            if kind == "birthdate":
                parts.append("Patient.birthDate")
            elif kind in ("observation", "observation_before_course"):
                codes = [self.fmap.first_code(m["code_set"]) for m in src["match"]]
                days = f"{src['lookback_days']} days" if src.get("lookback_days") else ""
                if kind == "observation":
                    when = f" from the last {days}" if days else ""
                else:
                    when = f" taken before the {src['drug']} course began" + (
                        f" (at most {days} before)" if days else ""
                    )
                parts.append("Observation " + ", ".join(f"{s}|{c}" for s, c in filter(None, codes)) + when)
            elif kind == "field_observation":
                parts.append(f"Observation {self.fmap.settings['local_systems']['field']}|{path}")
            elif kind == "condition":
                parts.append("Condition")
            elif kind in ("medication", "medication_list"):
                parts.append("MedicationRequest or MedicationStatement")
        return " or ".join(dict.fromkeys(parts))


def caveats_of(result: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The fired caveats that qualify one rule's advice, each with the values it shows."""
    caveat_entries = {e["id"]: e for e in result["rules"] if e["kind"] == "caveat"}
    return [
        {**caveat, "shown": caveat_entries.get(caveat["id"], {}).get("shown", [])}
        for caveat in entry.get("caveats") or []
        if isinstance(caveat, dict)
    ]


def _held(condition: Condition, leaves: Iterator[dict[str, Any]]) -> tuple[bool | None, list[dict[str, Any]]]:
    """(a condition's truth, the comparisons that made it true): every comparison of a true
    `all`, those of the true alternatives of an `any`; none under a `not`."""
    if isinstance(condition, Compare):
        leaf = next(leaves)
        return leaf["result"], [leaf] if leaf["result"] is True else []
    if isinstance(condition, Not):
        truth, _ = _held(condition.item, leaves)
        return (None if truth is None else not truth), []
    parts = [_held(item, leaves) for item in condition.items]
    truths = [truth for truth, _ in parts]
    if isinstance(condition, AllOf):
        truth = kleene_all(truths)
        return truth, [leaf for _, held in parts for leaf in held] if truth is True else []
    return kleene_any(truths), [leaf for t, held in parts if t is True for leaf in held]

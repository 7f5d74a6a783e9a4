"""Which Conditions count as a diagnosis: FHIR R4 Condition.verificationStatus.

verificationStatus is a modifier element (it can say the Condition is not true), bound to the
ConditionVerificationStatus codes: unconfirmed (with its children provisional and differential),
confirmed, refuted, entered-in-error. A Condition counts when its status is `confirmed`, and, as R4
defines the element as optional ("verificationStatus is not required": an emergency-room problem may
have none, and only refuted and entered-in-error mark a Condition as not valid), when it has none.
`refuted` and `entered-in-error` never count, whatever the map says; the map's
`settings.condition_exclude_verification` lists the other statuses a site does not count (shipped:
unconfirmed, provisional, differential). A status this reader cannot read (no code of that system,
or a code it does not know) is a modifier it does not understand, so the Condition does not count.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.fhir.codes import codings
from fsgs_kb.engine.fhir.setaside import quoted

SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CODES = ("unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error")
NEVER = ("refuted", "entered-in-error")


def status_codes(condition: dict[str, Any]) -> list[str]:
    """The ConditionVerificationStatus codes of a Condition (codings of other systems left out)."""
    return [code for system, code in codings(condition.get("verificationStatus")) if system == SYSTEM]


def why_not_counted(condition: dict[str, Any], excluded: list[str]) -> str | None:
    """None when the Condition counts as a diagnosis; else why not, in words."""
    if condition.get("verificationStatus") is None:
        return None
    codes = status_codes(condition)
    if not codes:
        return "its verificationStatus has no code of " + SYSTEM + ": not a status this reader understands"
    unknown = [c for c in codes if c not in CODES]
    if unknown:
        return f"verificationStatus {quoted(unknown[0])} is not a ConditionVerificationStatus code"
    barred = [c for c in codes if c in NEVER or c in excluded]
    if barred:
        return f"verificationStatus {barred[0]}: only a confirmed diagnosis counts"
    return None

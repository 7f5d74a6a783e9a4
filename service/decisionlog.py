"""The decision log: one SQLite row per hook call, one per feedback item, and the seen JWT ids.

SQLite in WAL mode, so several server workers (processes) write to one file safely: each write
is one short transaction, and a writer waits (busy timeout) instead of failing while another
holds the lock. The same file keeps the JWT ids already accepted, so a replayed token is refused
whichever worker it reaches (the primary key on (iss, jti) makes the check atomic across them).

A decision row holds the time, the hookInstance, the service, the knowledge base (id, version,
fingerprint), the hash of the evaluated record, the result at standard detail with the record in it (so
`fsgs-kb replay --decision-log` re-derives it) and the resources the conversion set aside
(`set_aside`, carried beside the result as for FHIR input on the command line), and the uuids of
the cards sent (uuid, rule, indicator: a `warning` card offers OVERRIDE_REASONS, an `info` card
none). When a masking
secret is configured, the patient identifiers are keyed hashes (HMAC-SHA256): the context's
patientId in its column, and the record's id before evaluation, so that no hash in the row is of
the clear identifier.

A refused call leaves a row too, so an auditor sees that an EHR tried and was turned away: a hook
call as a decision row with status `rejected_<HTTP status>` and the reason in its note (also a
token the gate refused, 401), a feedback call as a `feedback_refused` row (time, service, HTTP
status, the reason the EHR was told or the gate's reason): never its body, which nothing vouches
for. A feedback item is a `feedback` row only when the whole request was accepted, so the readers
(`feedback-report`) count feedback as before and the refusals apart. `feedback_refused` is optional
to the readers: a log written before it existed has none, and reads as having no refused calls.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from fsgs_kb.engine.audit.replay import replay_one
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.masking import key_id
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.records import parse_json

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_MS = 10_000
JTI_PURGE_EVERY = 256  # purge expired JWT ids after this many new ones
CHECKPOINT_SECONDS = 1.0
WAL_TRUNCATE_FRAMES = 4096  # ~16 MiB of write-ahead log: then a checkpoint that resets it
MAX_REASON = 500  # characters of a refused call's reason kept in its row (a hook call's note, too)
OVERRIDE_SYSTEM = "urn:fsgs-kb:override-reason"
OVERRIDE_REASONS = (
    {
        "system": OVERRIDE_SYSTEM,
        "code": "clinical-judgement",
        "display": "Intended: clinical judgement for this patient",
    },
    {"system": OVERRIDE_SYSTEM, "code": "data-incorrect", "display": "The values shown are wrong or out of date"},
    {"system": OVERRIDE_SYSTEM, "code": "not-applicable", "display": "Does not apply to this patient"},
    {"system": OVERRIDE_SYSTEM, "code": "already-addressed", "display": "Already being addressed"},
)

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    service TEXT NOT NULL,
    hook TEXT NOT NULL,
    patient TEXT,
    kb_id TEXT NOT NULL,
    kb_version TEXT NOT NULL,
    kb_fingerprint TEXT NOT NULL,
    input_sha256 TEXT,
    decision_id TEXT,
    status TEXT NOT NULL,
    result TEXT,
    cards TEXT NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS cards (
    decision INTEGER NOT NULL REFERENCES decisions(id),
    uuid TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    rule_version TEXT NOT NULL,
    indicator TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_by_uuid ON cards(uuid);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    service TEXT NOT NULL,
    card TEXT NOT NULL,
    decision INTEGER REFERENCES decisions(id),
    rule_id TEXT,
    rule_version TEXT,
    outcome TEXT NOT NULL,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    outcome_timestamp TEXT
);
CREATE TABLE IF NOT EXISTS feedback_refused (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    service TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_jti (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (iss, jti)
) WITHOUT ROWID;
"""


CARD_NAMESPACE = uuid.UUID("5b0e6f0c-3c55-5b7e-9a57-2f1d0c5a7e11")
# the cards that are not a rule's (service/cards.py): undetermined rules, resources set aside, an
# order hook's draft orders none of which could be checked, a call that brought no patient data, a
# record the knowledge base could not evaluate (invalid or error)
UNDETERMINED = "UNDETERMINED"
SET_ASIDE = "SET_ASIDE"
ORDER_NOT_CHECKED = "ORDER_NOT_CHECKED"
NO_DATA = "NO_DATA"
NOT_EVALUATED = "NOT_EVALUATED"
CARDS_NOT_OF_A_RULE = (UNDETERMINED, SET_ASIDE, ORDER_NOT_CHECKED, NO_DATA, NOT_EVALUATED)


def card_uuid(decision_id: str, rule_id: str) -> str:
    """A card's uuid: the same decision and rule always give the same card."""
    return str(uuid.uuid5(CARD_NAMESPACE, f"{decision_id}:{rule_id}"))


@dataclass(frozen=True)
class CardRow:
    uuid: str
    rule_id: str
    rule_version: str
    indicator: str


def offered_reasons(indicator: str | None) -> list[dict[str, str]]:
    """The overrideReasons a card of this indicator carries: a warning's four, an info card none."""
    return [dict(r) for r in OVERRIDE_REASONS] if indicator == "warning" else []


def offered_reason(indicator: str | None, system: Any, code: Any) -> dict[str, str] | None:
    """The override reason (system and code) a card of this indicator offered, or None."""
    return next((r for r in offered_reasons(indicator) if (r["system"], r["code"]) == (system, code)), None)


def feedback_contradiction(indicator: str | None, outcome: str, coding: dict[str, Any], other: bool) -> str | None:
    """Why one feedback item contradicts the card it is about (None when it does not): overridden on
    a card that offered no override reason, a reason the card did not offer, or `other` (the same
    card already has feedback with the other outcome: a card is accepted or overridden, once)."""
    if other:
        return "the card already has feedback with the other outcome (a card is accepted or overridden, not both)"
    if outcome != "overridden" or indicator is None:
        return None
    if not offered_reasons(indicator):
        return f"overridden, but the card ({indicator}) offered no override reasons"
    if coding and offered_reason(indicator, coding.get("system"), coding.get("code")) is None:
        return "the override reason is not one of the card's overrideReasons (system and code)"
    return None


class FeedbackRefused(Exception):
    """A feedback item contradicts the card the log has, or names a card this service never sent
    (the whole request is rolled back)."""

    def __init__(self, index: int, status: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.status = status
        self.message = message


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _io_error(path: Path, exc: Exception) -> KBErrors:
    return KBErrors(
        [KBError("service.decision_log", f"cannot use the decision log: {exc}", file=str(path), hint="check the path")]
    )


class DecisionLog:
    """The writer one server worker holds (one connection, used from the event loop's thread)."""

    def __init__(self, path: Path, mask_key: bytes | None) -> None:
        self.path = path
        self.mask_key = mask_key
        self._new_jti = 0
        try:
            self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run in the background
            with self._transaction():
                for statement in TABLES.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self._check_meta()
        except sqlite3.Error as exc:
            raise _io_error(path, exc) from None
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="decision-log-checkpoint", daemon=True)
        self._checkpointer.start()

    def _transaction(self) -> Any:
        return _Transaction(self.db)

    def _check_meta(self) -> None:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        mask = key_id(self.mask_key) or "none"
        if not meta:
            self.db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("schema_version", SCHEMA_VERSION), ("mask_key_id", mask)]
            )
        elif meta.get("schema_version") != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
        elif meta.get("mask_key_id") != mask:
            raise sqlite3.DatabaseError(
                "it was written with another masking key (or none): identifiers would not link across rows"
            )

    def pseudonym(self, value: str | None) -> str | None:
        """A patient identifier as stored: HMAC-SHA256 with the masking secret, else as given."""
        if value is None or self.mask_key is None:
            return value
        return "hmac-sha256:" + hmac.new(self.mask_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def logged_set_aside(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The set-aside list as the log keeps it. With a masking secret a message is not kept (it may
        quote a patient reference: `refers to Patient/…, not the Bundle's Patient (…)`) but said in
        words of its reason, and a Patient's id is its keyed hash, as the patient columns are."""
        if self.mask_key is None:
            return items
        out = []
        for item in items:
            rtype, rid = item.get("resourceType"), item.get("id")
            if rtype == "Patient":
                rid = self.pseudonym(rid)
            said = f"{rtype}/{rid}" if rid else str(rtype)
            message = f"{said}: {item['reason']} (message not logged: patient identifiers are masked)"
            out.append({**item, "id": rid, "message": message})
        return out

    def record_decision(
        self,
        *,
        hook_instance: str,
        service: str,
        hook: str,
        patient: str | None,
        kb: dict[str, str],
        result: dict[str, Any] | None,
        status: str,
        cards: list[CardRow],
        note: str | None = None,
    ) -> int:
        decision = (result or {}).get("decision", {})
        row = (
            now_iso(),
            hook_instance,
            service,
            hook,
            self.pseudonym(patient),
            kb["id"],
            kb["version"],
            kb["fingerprint"],
            decision.get("input_sha256"),
            decision.get("decision_id"),
            status,
            orjson.dumps(result).decode("utf-8") if result is not None else None,
            json.dumps([c.uuid for c in cards]),
            note,
        )
        with self._transaction():
            cursor = self.db.execute(
                "INSERT INTO decisions (time, hook_instance, service, hook, patient, kb_id, kb_version, "
                "kb_fingerprint, input_sha256, decision_id, status, result, cards, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            rowid = int(cursor.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO cards VALUES (?, ?, ?, ?, ?)",
                [(rowid, c.uuid, c.rule_id, c.rule_version, c.indicator) for c in cards],
            )
        return rowid

    def record_feedback(self, service: str, items: list[dict[str, Any]]) -> list[int]:
        """Write each feedback item, linked to the latest decision that sent its card; returns
        the linked decision row of each. An item for a card no decision of this service sent
        raises FeedbackRefused (404), and one that contradicts its card too
        (feedback_contradiction: 400 for a reason the card did not offer, 409 for the other
        outcome than one already given): then nothing of the request is written. The same
        outcome again is written (a retried POST); the report counts it once. A card's uuid comes
        from its decision id and rule, so two calls on the same data send the same card: its
        feedback is that one card's, linked to the latest row that sent it."""
        linked: list[int] = []
        given: dict[str, str] = {}  # card -> outcome, in this request
        with self._transaction():
            for i, item in enumerate(items):
                found = self.db.execute(
                    "SELECT c.decision, c.rule_id, c.rule_version, c.indicator FROM cards c "
                    "JOIN decisions d ON d.id = c.decision "
                    "WHERE c.uuid = ? AND d.service = ? ORDER BY c.decision DESC LIMIT 1",
                    (item["card"], service),
                ).fetchone()
                if found is None:
                    named = json.dumps(item["card"][:100], ensure_ascii=False)
                    raise FeedbackRefused(i, 404, f"no card {named} was sent by {service}: no decision to link it to")
                decision, rule_id, rule_version, indicator = found
                reason = item.get("overrideReason") or {}
                coding = reason.get("reason") or {}
                before = self.db.execute(
                    "SELECT 1 FROM feedback WHERE card = ? AND service = ? AND outcome != ? LIMIT 1",
                    (item["card"], service, item["outcome"]),
                ).fetchone()
                other = before is not None or given.get(item["card"], item["outcome"]) != item["outcome"]
                why = feedback_contradiction(indicator, item["outcome"], coding, other)
                if why is not None:
                    raise FeedbackRefused(i, 409 if other else 400, why)
                offered = offered_reason(indicator, coding.get("system"), coding.get("code"))
                coding = offered or coding  # the display the card offered, not one sent back
                given.setdefault(item["card"], item["outcome"])
                self.db.execute(
                    "INSERT INTO feedback (time, service, card, decision, rule_id, rule_version, outcome, "
                    "override_system, override_code, override_display, user_comment, outcome_timestamp) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now_iso(),
                        service,
                        item["card"],
                        decision,
                        rule_id,
                        rule_version,
                        item["outcome"],
                        coding.get("system"),
                        coding.get("code"),
                        coding.get("display"),
                        reason.get("userComment"),
                        item.get("outcomeTimestamp"),
                    ),
                )
                linked.append(decision)
        return linked

    def record_refused_feedback(self, service: str, status: int, reason: str) -> None:
        """One row for a feedback call that was refused (any status but 200): when, to which
        service, the HTTP status and the reason (cut to MAX_REASON characters), never the body."""
        with self._transaction():
            self.db.execute(
                "INSERT INTO feedback_refused (time, service, status, reason) VALUES (?, ?, ?, ?)",
                (now_iso(), service, status, reason[:MAX_REASON]),
            )

    def remember_jti(self, iss: str, jti: str, expires: float) -> bool:
        """Record a JWT id; False when the same issuer's id was already accepted and is unexpired."""
        now = time.time()
        with self._transaction():
            self.db.execute("DELETE FROM seen_jti WHERE iss = ? AND jti = ? AND expires < ?", (iss, jti, now))
            try:
                self.db.execute("INSERT INTO seen_jti VALUES (?, ?, ?)", (iss, jti, expires))
            except sqlite3.IntegrityError:
                return False
            self._new_jti += 1
            if self._new_jti % JTI_PURGE_EVERY == 0:
                self.db.execute("DELETE FROM seen_jti WHERE expires < ?", (now,))
        return True

    def _checkpoints(self) -> None:
        """Copy the write-ahead log into the database every second, off the request path: an
        automatic checkpoint (which fsyncs) inside a request cost it 15-40 ms every ~150 calls."""
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > WAL_TRUNCATE_FRAMES:  # under steady load the log never restarts by itself
                        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.Error:
                    continue  # busy now; the next round catches up
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(timeout=5)
        self.db.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): the write lock is taken up front, so two
    workers never deadlock upgrading a read lock."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


# ---- reading the log: replay and feedback --------------------------------------------------------


# the tables the readers use, as the service creates them (TABLES): each column's SQLite types.
# OPTIONAL_TABLES came later: a log written before them has none, which reads as no such rows.
READ_TABLES = ("meta", "decisions", "cards", "feedback", "feedback_refused")
OPTIONAL_TABLES = ("feedback_refused",)
SQLITE_TYPES = {"TEXT": "text", "INTEGER": "integer", "REAL": "real"}
# outcomes the service writes (service/hooks.py OUTCOMES); the report counts by them
LOGGED_OUTCOMES = ("accepted", "overridden")
# per table, a test of its values beyond their types (true for a value the service never writes)
VALUE_TESTS = {
    "feedback": (f"outcome NOT IN {LOGGED_OUTCOMES!r}", f"its outcome is not one of {', '.join(LOGGED_OUTCOMES)}"),
    "feedback_refused": ("status NOT BETWEEN 400 AND 599", "its status is not an HTTP error status (400 to 599)"),
}
# SQLite virtual-machine steps a reader may take per byte of the file (at least STEP_FLOOR): a
# real log needs a few per byte; a view or expression that runs on forever is stopped by this
STEPS_PER_BYTE = 1000
STEP_FLOOR = 200_000_000
PROGRESS_EVERY = 10_000


@dataclass(frozen=True)
class Column:
    name: str
    types: tuple[str, ...]  # the SQLite storage classes (typeof) a value may have
    key: bool  # the table's INTEGER PRIMARY KEY (the rowid)


def _expected_schema() -> dict[str, tuple[Column, ...]]:
    """Each read table's columns, taken from TABLES itself (an in-memory database made with it),
    so the check cannot drift from what the service writes."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(TABLES)
        return {
            table: tuple(
                Column(name, (SQLITE_TYPES[decl],) + (() if notnull or pk else ("null",)), bool(pk))
                for _, name, decl, notnull, _, pk in mem.execute(f"PRAGMA table_info({table})")
            )
            for table in READ_TABLES
        }
    finally:
        mem.close()


EXPECTED = _expected_schema()


class _StepBudget:
    """A progress handler that stops any statement once the connection has taken `limit` steps."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls = 0
        self.spent = False

    def __call__(self) -> int:
        self.calls += 1
        self.spent = self.calls * PROGRESS_EVERY > self.limit
        return 1 if self.spent else 0


def _not_a_log(path: Path, why: str, hint: str | None = None) -> KBErrors:
    return KBErrors([KBError("service.decision_log", f"not a fsgs-kb decision log: {why}", file=str(path), hint=hint)])


class _Reader(sqlite3.Connection):
    """A read-only connection to a log, with the step budget its progress handler spends."""

    budget: _StepBudget | None = None


def _read_error(path: Path, db: sqlite3.Connection, exc: sqlite3.Error) -> KBErrors:
    """A SQLite error while reading, as a located error (never a traceback, never exit 3)."""
    budget = getattr(db, "budget", None)
    if budget is not None and budget.spent:
        return KBErrors(
            [
                KBError(
                    "service.decision_log",
                    f"reading the decision log took more than {budget.limit:,} SQLite steps, and was stopped",
                    file=str(path),
                    hint="a log the service wrote is read in a few steps per byte: this one was edited",
                )
            ]
        )
    return _not_a_log(path, f"SQLite: {exc}")


def open_readonly(path: Path) -> sqlite3.Connection:
    """The log for reading; a KBErrors (exit 2) when it is not a decision log as the service
    writes it. The file may have been edited, so it is opened defensively: read-only, with the
    schema's own SQL not trusted (`trusted_schema`), and a step budget that stops a statement that
    runs on (a recursive view named `feedback`). The read tables must be plain tables with the
    service's columns (`_check_schema`), and every value of the type the service writes
    (`_check_values`, naming table, row and column): then the readers' queries cannot fail or
    mix types."""
    if not path.is_file():
        raise KBErrors([KBError("service.decision_log", "no such decision log", file=str(path))])
    try:
        db = sqlite3.connect(
            f"file:{path.resolve()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, factory=_Reader
        )
    except sqlite3.Error as exc:
        raise _not_a_log(path, f"SQLite: {exc}") from None
    db.budget = _StepBudget(max(STEP_FLOOR, STEPS_PER_BYTE * path.stat().st_size))
    db.set_progress_handler(db.budget, PROGRESS_EVERY)
    try:
        db.execute("PRAGMA trusted_schema = OFF")
        defensive = getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE", None)  # Python 3.12+
        if defensive is not None:  # no writes to the schema, no pragmas that can corrupt the file
            getattr(db, "setconfig")(defensive, True)  # noqa: B009 - absent from 3.11's stubs
        db.execute("PRAGMA cell_size_check = ON")
        _check_schema(db, path)
        _check_values(db, path)
    except sqlite3.Error as exc:
        error = _read_error(path, db, exc)
        db.close()
        raise error from None
    except KBErrors:
        db.close()
        raise
    return db


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """Each read table is an ordinary table (not a view, not a virtual table) with the service's
    columns (none of them generated), its key column the table's key, and schema version 1."""
    kinds = {
        str(name).lower(): (kind, str(sql or ""))
        for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master")
        if isinstance(name, str)
    }
    for table, columns in EXPECTED.items():
        kind, sql = kinds.get(table, (None, ""))
        if kind is None and table in OPTIONAL_TABLES:
            continue
        if kind is None:
            raise _not_a_log(path, f"it has no {table} table")
        if kind != "table" or re.match(r"\s*CREATE\s+VIRTUAL\b", sql, re.IGNORECASE):
            raise _not_a_log(path, f"its {table} is a {'virtual table' if kind == 'table' else kind}, not a table")
        found = {
            str(name).lower(): (bool(pk), bool(hidden))
            for _, name, _, _, _, pk, hidden in db.execute(f"PRAGMA table_xinfo({table})")
        }
        for column in columns:
            if column.name not in found:
                raise _not_a_log(path, f"its {table} table has no {column.name} column")
            pk, hidden = found[column.name]
            if hidden:
                raise _not_a_log(path, f"its {table}.{column.name} column is generated, not stored")
            if column.key and not pk:
                raise _not_a_log(path, f"its {table}.{column.name} column is not the table's key")
    version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if version is None or version[0] != SCHEMA_VERSION:
        said = "none" if version is None else _short(version[0])
        raise _not_a_log(path, f"its schema version is {said}, expected {SCHEMA_VERSION}")


def _check_values(db: sqlite3.Connection, path: Path) -> None:
    """Every value of the decisions, cards, feedback and feedback_refused tables is of the type
    the service writes (SQLite keeps any type in any column), a feedback outcome one it writes and
    a refused call's status an HTTP error status: the first that is not is an error naming its
    table, row and column. One pass per table, reading types only (typeof does not load a value)."""
    present = {str(name).lower() for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in [t for t in READ_TABLES if t != "meta" and (t not in OPTIONAL_TABLES or t in present)]:
        columns = EXPECTED[table]
        tests = [f"typeof({c.name}) NOT IN ({', '.join(repr(t) for t in c.types)})" for c in columns]
        extra = VALUE_TESTS.get(table)
        if extra is not None:
            tests.append(extra[0])
        typeofs = ", ".join(f"typeof({c.name})" for c in columns)
        found = db.execute(f"SELECT rowid, {typeofs} FROM {table} WHERE {' OR '.join(tests)} LIMIT 1").fetchone()
        if found is None:
            continue
        rowid, kinds = found[0], found[1:]
        for column, kind in zip(columns, kinds, strict=True):
            if kind not in column.types:
                expected = " or ".join(column.types)
                message = f"{table} row {rowid}: its {column.name} is {kind}, where the service writes {expected}"
                break
        else:
            message = f"{table} row {rowid}: {VALUE_TESTS[table][1]}"
        raise KBErrors(
            [
                KBError(
                    "service.decision_log_row",
                    message,
                    file=str(path),
                    hint="the service never writes this: the log was edited or damaged",
                )
            ]
        )


def _decisions(db: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    yield from db.execute(
        "SELECT id, time, service, hook_instance, kb_version, kb_fingerprint, status, result, "
        "patient, input_sha256, decision_id, cards FROM decisions ORDER BY id"
    )


def _card_rows(db: sqlite3.Connection) -> dict[int, list[tuple[str, str]]]:
    """(uuid, rule id) of the cards each decision row sent, in the order they were written."""
    out: dict[int, list[tuple[str, str]]] = {}
    for decision, uuid_, rule_id in db.execute("SELECT decision, uuid, rule_id FROM cards ORDER BY rowid"):
        out.setdefault(decision, []).append((uuid_, rule_id))
    return out


def replay_log(kb: KnowledgeBase, path: Path) -> list[dict[str, Any]]:
    """One verdict per logged decision: identical, changed, other_kb (made by a knowledge base
    with another fingerprint: not replayed), not_evaluated (nothing to replay, e.g. an order-sign
    call without cyclosporine) or unreadable: a result that is not a JSON document within the
    readers' limits (size, nesting, engine/read/records.py), or whose row says otherwise
    (`row_problems`: a result moved from another row is not that row's decision), or a row
    without a result that says it has one (`unevaluated_row_problems`: an evaluation's status, a
    decision id, an input hash, a rule's card)."""
    db = open_readonly(path)
    reports = []
    try:
        cards = _card_rows(db)
        for row in _decisions(db):
            rowid, when, service, hook_instance, version, fingerprint, status, text = row[:8]
            ident = {"row": rowid, "time": when, "service": service, "hook_instance": hook_instance}
            if fingerprint != kb.fingerprint:
                reports.append({**ident, "verdict": "other_kb", "kb_version": version, "kb_fingerprint": fingerprint})
                continue
            if text is None:
                contradictions = unevaluated_row_problems(row, cards.get(rowid, []))
                if contradictions:
                    problem_text = "a row without a result that says otherwise: " + "; ".join(contradictions)
                    reports.append({**ident, "verdict": "unreadable", "problem": problem_text})
                else:
                    reports.append({**ident, "verdict": "not_evaluated", "status": status})
                continue
            old, problem = parse_json(str(text).encode("utf-8", "surrogatepass"))
            if problem is not None:
                reports.append({**ident, "verdict": "unreadable", "problem": f"its result: {problem.message}"})
                continue
            if not isinstance(old, dict) or not isinstance(old.get("decision"), dict):
                reports.append({**ident, "verdict": "unreadable", "problem": "its result has no decision record"})
                continue
            if "input" not in old["decision"]:
                reports.append({**ident, "verdict": "input_missing"})
                continue
            contradictions = row_problems(row, old, cards.get(rowid, []))
            if contradictions:
                problem_text = "the row contradicts its result: " + "; ".join(contradictions)
                reports.append({**ident, "verdict": "unreadable", "problem": problem_text})
                continue
            reports.append({**ident, **replay_one(kb, old, {})})
    except sqlite3.Error as exc:
        raise _read_error(path, db, exc) from None
    finally:
        db.close()
    return reports


# the statuses of the rows the service writes without a result (service/hooks.py), and the one card
# such a row may carry: ORDER_NOT_CHECKED, on an order hook's call whose cyclosporine drafts were
# all set aside (no decision was made, so no rule's card and no decision id or input hash)
UNEVALUATED_STATUSES = ("no_cyclosporine_draft", "prefetch_missing")
REJECTED_STATUS = re.compile(r"rejected_[1-5][0-9][0-9]")
UNEVALUATED_CARDS = {"no_cyclosporine_draft": (ORDER_NOT_CHECKED,)}


def unevaluated_row_problems(row: tuple[Any, ...], cards: list[tuple[str, str]]) -> list[str]:
    """What a row without a result says that only an evaluation could: a status of an evaluation
    (evaluated, out_of_scope, …), a decision id or input hash, rule cards (only ORDER_NOT_CHECKED,
    once, on a no_cyclosporine_draft row), or a cards column that is not the cards table's. Such a
    row had its result removed, or was given cards or a status it never had."""
    _, _, _, _, _, _, status, _, _, sha, did, listed = row
    out = []
    if not (isinstance(status, str) and (status in UNEVALUATED_STATUSES or REJECTED_STATUS.fullmatch(status))):
        out.append(f"status {_short(status)}, which a row without a result cannot have")
    if sha is not None:
        out.append(f"input_sha256 column {_short(sha)}")
    if did is not None:
        out.append(f"decision_id column {_short(did)}")
    sent, problem = parse_json(str(listed).encode("utf-8", "surrogatepass"))
    if problem is not None or sent != [u for u, _ in cards]:
        out.append("its cards column does not list the cards table's cards of this row")
    allowed = UNEVALUATED_CARDS.get(status, ()) if isinstance(status, str) else ()
    rules = [rule_id for _, rule_id in cards]
    for rule_id in dict.fromkeys(rules):
        if rule_id not in allowed:
            out.append(f"a card for {rule_id}, which no call without a decision sends")
        elif rules.count(rule_id) > 1:
            out.append(f"{rules.count(rule_id)} {rule_id} cards, where such a call sends one")
    return out


PATIENT_ORIGIN = "Patient/"  # a logged result's origin: the Patient the EHR named (context.patientId)


def patient_origin(patient: str | None) -> str:
    """The origin a logged result carries: `Patient/<the row's patient column>`."""
    return f"{PATIENT_ORIGIN}{patient}"


def row_patient(result: dict[str, Any]) -> Any:
    """What a row's patient column must hold for its result: the patient the EHR named, which the
    result carries as its origin (`Patient/<id>`); a result logged without one (before it was
    carried) holds only its record id. The record id is not the column: the map may read it from
    an identifier (`record_id_system`, an MRN) that is not the Patient's FHIR id."""
    origin = result.get("origin")
    if isinstance(origin, str) and origin.startswith(PATIENT_ORIGIN):
        return origin[len(PATIENT_ORIGIN) :]
    return result.get("patient_id")


def row_problems(row: tuple[Any, ...], result: dict[str, Any], cards: list[tuple[str, str]]) -> list[str]:
    """What a decision row's columns say that its result does not: the patient (`row_patient`), the input hash,
    the decision id, the knowledge base, the status, and the cards sent (each card's uuid is
    derived from the decision id and its rule, service/cards.py, and a rule's card is sent only
    for advice that fired). Replay re-derives the result from the input it holds; these tie the
    result to its row, so results swapped between rows are not `identical`."""
    _, _, _, _, _, fingerprint, status, _, patient, sha, did, listed = row
    decision = result["decision"]
    made_by = decision.get("kb") if isinstance(decision.get("kb"), dict) else {}
    out = [
        f"{name} column {_short(column)}, the result's {_short(value)}"
        for name, column, value in (
            ("patient", patient, row_patient(result)),
            ("input_sha256", sha, decision.get("input_sha256")),
            ("decision_id", did, decision.get("decision_id")),
            ("kb_fingerprint", fingerprint, made_by.get("fingerprint")),
            ("status", status, result.get("status")),
        )
        if column != value
    ]
    sent, problem = parse_json(str(listed).encode("utf-8", "surrogatepass"))
    if problem is not None or sent != [u for u, _ in cards]:
        out.append("its cards column does not list the cards table's cards of this row")
    listed_advice = result.get("advice")
    advice: list[Any] = listed_advice if isinstance(listed_advice, list) else []
    for uuid_, rule_id in cards:
        if uuid_ != card_uuid(str(decision.get("decision_id")), rule_id):
            out.append(f"card {_short(uuid_)} ({rule_id}) is not this decision's card")
        elif rule_id not in CARDS_NOT_OF_A_RULE and rule_id not in advice:
            out.append(f"a card for {rule_id}, which is not among the result's advice")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 24 else text[:21] + "…"


VERDICTS = ("identical", "changed", "other_kb", "input_missing", "unreadable", "not_evaluated")


def replay_summary(reports: list[dict[str, Any]]) -> dict[str, int]:
    return {v: sum(r["verdict"] == v for r in reports) for v in VERDICTS}


def feedback_summary(path: Path) -> dict[str, Any]:
    """Per rule and version: cards sent, feedback received, accepted, overridden and the reasons.

    A card is its uuid (decision id and rule): the same patient data on the same day in two calls
    sends the same card again, counted once (`cards`; `sent` counts the calls that sent it), and
    its feedback is that one card's, whichever row it was linked to.

    The same card's same outcome given again (a retried POST, a second click) counts once
    (`duplicates`). An item that contradicts its card is not counted (`contradictory`, per rule
    and in all): the card has both outcomes (each of its items), or it was overridden with a
    reason it did not offer, or while offering none (known only where the log has the card; the
    service refuses these when it has it, so they come from a log written before it did, or
    from feedback on cards it has no record of).

    Feedback calls the service refused (`feedback_refused`: a bad token, a body it could not read,
    an item it could not take) wrote no feedback; they are counted apart, by HTTP status
    (`refused`, `refused_by_status`), so that a report shows an EHR's feedback that never arrived."""
    db = open_readonly(path)
    try:
        has_refused = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feedback_refused'"
        ).fetchone()
        refused = (
            db.execute("SELECT status, count(*) FROM feedback_refused GROUP BY status ORDER BY status").fetchall()
            if has_refused
            else []
        )
        shown = db.execute(  # a card is its uuid: two calls on the same data send the same card
            "SELECT rule_id, rule_version, count(DISTINCT uuid), count(*) FROM cards GROUP BY rule_id, rule_version"
        ).fetchall()
        feedback = db.execute(
            "SELECT f.service, f.card, coalesce(f.rule_id, '(unknown card)'), coalesce(f.rule_version, ''), f.outcome, "
            "f.override_system, f.override_code, f.override_display, f.user_comment, "
            "(SELECT c.indicator FROM cards c WHERE c.uuid = f.card AND c.decision = f.decision LIMIT 1) "
            "FROM feedback f ORDER BY f.id"
        ).fetchall()
        decisions = db.execute("SELECT count(*) FROM decisions").fetchone()[0]
    except sqlite3.Error as exc:
        raise _read_error(path, db, exc) from None
    finally:
        db.close()
    rules: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(rule: str, version: str) -> dict[str, Any]:
        return rules.setdefault(
            (rule, version),
            {
                "rule": rule,
                "version": version,
                "cards": 0,
                "sent": 0,
                "accepted": 0,
                "overridden": 0,
                "contradictory": 0,
                "reasons": [],
            },
        )

    for rule, version, count, sent in shown:
        entry(rule, version).update(cards=count, sent=sent)
    outcomes: dict[tuple[str, str], set[str]] = {}
    for row in feedback:  # service, card, …, outcome
        outcomes.setdefault((row[0], row[1]), set()).add(row[4])
    seen: set[tuple[str, str, str]] = set()
    reasons: dict[tuple[str, str], dict[tuple[Any, Any], dict[str, Any]]] = {}
    duplicates = contradictory = 0
    for service, card, rule, version, outcome, system, code, display, comment, indicator in feedback:
        item = entry(rule, version)
        both = len(outcomes[(service, card)]) > 1
        if feedback_contradiction(indicator, outcome, {"system": system, "code": code} if code else {}, both):
            item["contradictory"] += 1
            contradictory += 1
            continue
        if (service, card, outcome) in seen:
            duplicates += 1
            continue
        seen.add((service, card, outcome))
        item[outcome] = item.get(outcome, 0) + 1
        if outcome == "overridden":
            found = reasons.setdefault((rule, version), {}).setdefault(
                (code, display), {"code": code, "display": display, "count": 0, "with_comment": 0}
            )
            found["count"] += 1
            found["with_comment"] += comment is not None
    for key, item in rules.items():
        item["reasons"] = sorted(reasons.get(key, {}).values(), key=lambda r: (-r["count"], r["code"] or ""))
    return {
        "decisions": decisions,
        "feedback": len(feedback),
        "duplicates": duplicates,
        "contradictory": contradictory,
        "refused": sum(count for _, count in refused),
        "refused_by_status": {str(status): count for status, count in refused},
        "rules": [rules[k] for k in sorted(rules)],
    }

"""Shared fixtures for the hostile suite: it drives `fsgs-kb` only as a command (real subprocesses),
so it stays valid whatever the package looks like inside.

Exit-code contract asserted throughout: 0 ok, 1 some record invalid, 2 usage/IO error, 3 internal
error. Every helper here is bounded in time; nothing waits on a bare sleep.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Hypothesis keeps a cache in ./.hypothesis unless told otherwise: keep the working directory clean.
if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = tempfile.mkdtemp(prefix="hostile-hypothesis-")
    atexit.register(shutil.rmtree, os.environ["HYPOTHESIS_STORAGE_DIRECTORY"], ignore_errors=True)

_candidate = Path(sys.executable).parent / "fsgs-kb"
FSGS = [str(_candidate)] if _candidate.exists() else [shutil.which("fsgs-kb") or str(_candidate)]

RULES = Path(__file__).resolve().parents[2] / "rules"

# A KB that is rejected by `validate` for its content (too deep, too wide, broken YAML, missing file).

KB_REJECT_EXIT = 1  # validate reports a broken knowledge base as findings (exit 1); other commands exit 2

# examples/dose-above-ceiling.json, embedded so a restructured checkout cannot move it away.
GOOD_RECORD = {
    "id": "EX-DOSE-HIGH",
    "age_years": 45,
    "weight_kg": 70,
    "fsgs": {"biopsy_proven": True, "etiology": "primary"},
    "steroids": {"response": "resistant", "high_dose_weeks": 16},
    "cyclosporine": {"status": "current", "daily_dose": {"value": 357, "unit": "mg/day"}, "months_on_therapy": 11.9},
    "serum_creatinine": {"current": 1.17, "baseline": 0.9, "unit": "mg/dL"},
    "blood_pressure": {"systolic_mmHg": 118, "diastolic_mmHg": 70},
}


HOSTILE_DEEP = b'{"id": "DEEP", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"  # beyond json's recursion limit


def good_record(patient_id: str = "EX-DOSE-HIGH") -> dict:
    record = copy.deepcopy(GOOD_RECORD)
    record["id"] = patient_id
    return record


def good_line(patient_id: str = "EX-DOSE-HIGH") -> bytes:
    return json.dumps(good_record(patient_id)).encode()


def jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FSGS_KB_RULES", "FSGS_KB_FAULT", "FSGS_KB_CACHE")}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1", FSGS_KB_CACHE=_CACHE_DIR)
    env.update(extra)
    return env


_CACHE_DIR = ""


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the validated-KB cache out of ~/.cache and shared across this session only."""
    global _CACHE_DIR
    _CACHE_DIR = str(tmp_path_factory.mktemp("kb-cache"))


@dataclass
class Run:
    args: list[str]
    rc: int
    stdout: bytes
    stderr_bytes: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def both(self) -> str:
        return self.out + "\n" + self.err

    def __repr__(self) -> str:  # what pytest shows when an assertion fails: short, one line
        words = [Path(a).name if a.startswith("/") else a for a in self.args]
        tail = self.err.strip().splitlines()[-1:] or [""]
        return f"exit {self.rc} from `{' '.join(words)[:160]}` (stderr: {tail[0][:160]!r})"


def run(
    *args: object,
    cwd: Path | str | None = None,
    input: bytes | None = None,
    timeout: float = 30,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
    preexec_fn=None,
) -> Run:
    """Run `fsgs-kb ARGS` to completion (bounded by `timeout`)."""
    return run_argv(FSGS + [str(a) for a in args], cwd, input, timeout, env, stdin, preexec_fn)


def run_argv(argv: list[str], cwd=None, input=None, timeout: float = 30, env=None, stdin=None, preexec_fn=None) -> Run:
    """Run any command line (e.g. `sh -c ...` around fsgs-kb) to completion."""
    proc = subprocess.run(
        argv,
        cwd=cwd,
        input=input,
        stdin=None if input is not None else (subprocess.DEVNULL if stdin is None else stdin),
        capture_output=True,
        timeout=timeout,
        env=env or base_env(),
        preexec_fn=preexec_fn,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr)


def escaped_exception(stderr: str) -> str | None:
    """The exception line of the last Python traceback in `stderr`, or None when there is none."""
    if "Traceback" not in stderr:
        return None
    tail = stderr[stderr.rindex("Traceback") :].splitlines()
    return next((line for line in tail[1:] if line and not line[0].isspace()), tail[-1])[:200]


def assert_no_traceback(result: Run) -> None:
    """No Python traceback on stderr; on failure, name the exception that escaped."""
    exception = escaped_exception(result.err)
    if exception is not None:
        pytest.fail(f"traceback in stderr (rc {result.rc}): {exception}", pytrace=False)


def iter_results(path: Path) -> Iterator[dict]:
    """The result lines of a batch output, parsed one at a time; every line must be one JSON result
    (no header lines)."""
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            yield json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise AssertionError(f"output line {number} is not a JSON result: {raw[:60]!r} ({exc})") from None


def read_results(path: Path) -> list[dict]:
    """The result lines of a batch output; every line must be one JSON result (no header lines)."""
    return list(iter_results(path))


def assert_each_record_once(results: Iterable[dict], n: int) -> None:
    """Record numbers are exactly 1..n, in order: nothing lost, nothing twice."""
    numbers = [r.get("record") for r in results]
    assert numbers == list(range(1, n + 1)), f"record numbers {numbers[:20]}… (len {len(numbers)}), expected 1..{n}"


def assert_each_record_once_in(path: Path, n: int) -> None:
    """assert_each_record_once on a batch output, each line parsed and checked as read_results does
    but not kept: 20,000 standard-detail results are ~1 GB of Python objects, and holding them cost
    seconds of allocation and garbage collection where only their record numbers are asserted."""
    assert_each_record_once(iter_results(path), n)


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    """A private copy of the knowledge base, safe to damage."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


@pytest.fixture(scope="session")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """20,000 valid records: several seconds of work even on 2 fast workers, to interrupt partway."""
    n = 20_000
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_bytes(jsonl([good_line(f"P{i:06d}") for i in range(n)]))
    return path, n


@pytest.fixture(scope="session")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway git repository holding rules/ in one commit (for git:REV specs)."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(RULES, repo / "rules")
    git = ["git", "-c", "user.name=hostile", "-c", "user.email=hostile@example.invalid", "-c", "commit.gpgsign=false"]
    for argv in (["init", "-q"], ["add", "rules"], ["commit", "-q", "-m", "kb"]):
        subprocess.run(git + argv, cwd=repo, check=True, capture_output=True, timeout=30)
    return repo


# --- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def children_of(pid: int) -> dict[int, int]:
    """{child pid: start time} of the live (non-zombie) children of `pid`, found by scanning /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info and info[1] == pid and info[0] != "Z":
                found[int(entry)] = info[2]
    return found


def still_running(procs: dict[int, int]) -> list[int]:
    """Those of `procs` ({pid: start time}) that still run (same start time, not a zombie)."""
    alive = []
    for pid, start in procs.items():
        info = _stat(pid)
        if info and info[2] == start and info[0] != "Z":
            alive.append(pid)
    return alive


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def line_count(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def run_with_own_pid(script: str, *args: object, cwd: Path) -> Run:
    """`sh -c SCRIPT` then exec fsgs-kb ARGS in the same process: SCRIPT knows the run's process
    id ($$), which names the temporary files a run writes beside its output."""
    return run_argv(["sh", "-c", script + '; exec "$0" "$@"', *FSGS, *(str(a) for a in args)], cwd=cwd)


def sigint_as_at_a_terminal() -> None:
    """In a child about to exec: Ctrl-C's SIGINT handled as at a terminal. A shell starts a
    background job (`.ci/run &`, `nohup … &`) with SIGINT ignored, every process below inherits
    that, and Python then never installs its handler: the Ctrl-C tests would only see that the
    signal is ignored (a CI run started that way failed three of them)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_ignored_as_in_a_background_job() -> None:
    """In a child about to exec: SIGINT ignored, as a non-interactive shell starts `fsgs-kb … &`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Batch:
    """A `fsgs-kb batch` running in the background, with its workers tracked for cleanup."""

    def __init__(self, *args: object, cwd: Path | None = None, preexec_fn=sigint_as_at_a_terminal) -> None:
        self.argv = FSGS + ["batch", *[str(a) for a in args]]
        # stdout/stderr go to unnamed files, not pipes: a lingering worker holding a pipe open
        # must not make waiting for the parent hang.
        self.stdout, self.stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=self.stderr,
            env=base_env(),
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        self.workers: dict[int, int] = {}

    def wait_for_lines(self, output: Path, n: int, timeout: float = 10) -> None:
        """Block until the output holds at least n lines (observed progress), or fail."""
        ok = wait_until(lambda: line_count(output) >= n or self.proc.poll() is not None, timeout)
        if self.proc.poll() is not None:
            pytest.fail(f"batch ended (rc {self.proc.returncode}) before {n} lines were seen; input too short?")
        if not ok:
            pytest.fail(f"batch wrote fewer than {n} lines in {timeout} s")
        self.record_workers()

    @property
    def err(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def record_workers(self) -> None:
        self.workers.update(children_of(self.proc.pid))

    def finish(self, timeout: float = 15) -> tuple[int, str]:
        """Wait for the parent to exit; (exit code, stderr)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"batch did not exit within {timeout} s", pytrace=False)
        return self.proc.returncode, self.err

    def kill(self) -> None:
        """Kill the batch and each recorded worker, one by one, by pid."""
        if self.proc.poll() is None:
            self.record_workers()
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in still_running(self.workers):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def batches():
    """Start background batches; every one (and its workers) is killed at teardown."""
    started: list[Batch] = []

    def start(*args: object, cwd: Path | None = None, preexec_fn=sigint_as_at_a_terminal) -> Batch:
        started.append(Batch(*args, cwd=cwd, preexec_fn=preexec_fn))
        return started[-1]

    yield start
    for batch in started:
        batch.kill()

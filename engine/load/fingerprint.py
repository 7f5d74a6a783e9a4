"""Content hashes that make a decision reproducible: of the knowledge base and of the input.

The knowledge-base fingerprint hashes the parsed content of every YAML file (canonical JSON,
sorted keys) with its path, so comments and formatting do not change it but any change of
meaning does. Scenario tests under tests/ are not knowledge and are left out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fsgs_kb.engine.load.yamlsafe import Located


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kb_fingerprint(docs: dict[str, Located], root: str, inside: dict[str, str] | None = None) -> str:
    """sha256 over (path relative to the rules directory, canonical content) of every file.

    `inside` maps each file to its path inside the rules directory (the loader records it); the
    displayed paths alone cannot tell when the working directory is inside the rules directory."""
    digest = hashlib.sha256()
    prefix = root.rstrip("/") + "/"
    inside = inside or {}
    for file in sorted(docs, key=lambda f: inside.get(f, f)):
        relative = inside.get(file) or (file[len(prefix) :] if file.startswith(prefix) else file.rsplit("/", 1)[-1])
        if relative.startswith("tests/"):
            continue
        digest.update(relative.encode("utf-8") + b"\0" + canonical_json(docs[file].data).encode("utf-8") + b"\0")
    return digest.hexdigest()

"""Fixtures of the hostile suite, defined with its helpers in hostile_support."""

from hostile_support import _private_cache, batches, big_input, git_repo, kb_copy  # noqa: F401

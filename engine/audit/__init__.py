"""Trace, replay, diff and impact: reproduce and compare past decisions."""

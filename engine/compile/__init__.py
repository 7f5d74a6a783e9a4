"""Model → durable-rules rulesets; the only door to durable-rules."""

"""Many records: read, fan out to workers, survive crashes, resume."""

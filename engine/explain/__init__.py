"""Model and results → clinical words: conditions and provenance as a clinician reads them."""

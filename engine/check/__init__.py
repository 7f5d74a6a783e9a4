"""Model → problems: cross-references, provenance, meaning checks, the validation report."""

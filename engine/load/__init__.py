"""YAML → located, schema-valid model: safe YAML, schemas, condition parser, fingerprints."""

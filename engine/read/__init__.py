"""Input bytes → records: JSON Lines, JSON arrays, CSV and single documents, read strictly and
within bounds (size, nesting, numbers, UTF-8, duplicate keys). Every command reads through here."""

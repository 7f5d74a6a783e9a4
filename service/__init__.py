"""The CDS Hooks 2.0 service (`fsgs-kb serve`)."""

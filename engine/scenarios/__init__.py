"""Editors' scenario tests: run them and measure coverage."""

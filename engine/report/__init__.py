"""The only place that renders text, JSON, Markdown and HTML for people and tools."""

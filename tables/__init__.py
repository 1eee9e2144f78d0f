"""Windowed table definitions, pure aggregate value types, alert rules and the web view."""

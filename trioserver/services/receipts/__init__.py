"""Receipts, read markers and unread notification counts, with their /sync stream sources."""

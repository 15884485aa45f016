"""Durable and ephemeral storage: SQLite through apsw, the TTL store, and (later) blobs."""

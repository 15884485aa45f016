"""The Server-Server API (/_matrix/federation) and the key API (/_matrix/key)."""

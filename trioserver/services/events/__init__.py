"""The signed event graph: room versions, event format, hashing, redaction, auth rules."""

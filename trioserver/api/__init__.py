"""The HTTP edge: blueprints that parse, authenticate, call a service and reply."""

"""Client-Server API blueprints, one per endpoint family."""

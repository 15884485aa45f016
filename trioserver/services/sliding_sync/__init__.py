"""Simplified Sliding Sync (MSC4186): one engine behind the unstable and the v4 wire shapes."""

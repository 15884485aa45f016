"""Rooms: the append pipeline, room operations, and reading the timeline and state."""

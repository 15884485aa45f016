"""`python -m trioserver` is the same program as the `trioserver` command."""

from __future__ import annotations

from trioserver.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

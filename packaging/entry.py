"""PyInstaller entry point: the frozen `trioserver` executable is `python -m trioserver`."""

from __future__ import annotations

from trioserver.cli import main

raise SystemExit(main())

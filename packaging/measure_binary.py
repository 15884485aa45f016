"""Figures for the one-file executable: `python packaging/measure_binary.py BINARY`.

Prints the binary's size; cold start to the first answered /versions (median of 5, each start
unpacking the bundle again into a new `_MEI*` directory); resident memory of the bootloader plus
the server it starts, idle and after a few thumbnails; how much is unpacked where; and the newest
GLIBC symbol version that the bootloader or any bundled library needs, which is the oldest glibc
the binary runs on. Every run is under `env -i`, as in smoke_binary.py.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import smoke_binary as smoke


def cold_starts(binary: Path, work: Path, runs: int = 5) -> list[float]:
    """Seconds from spawning the binary to the first answered /versions, each on a new data dir."""
    flags = smoke.serve_flags(binary, work)
    times: list[float] = []
    for i in range(runs):
        with smoke.serving(binary, work, work / f"cold{i}", *flags) as server:
            smoke.check_versions(server)
            times.append(time.monotonic() - server.started_at)
            server.stop()
    return times


def newest_glibc(paths: list[Path]) -> tuple[str, str] | None:
    """The newest GLIBC_x.y symbol version any of `paths` needs, and the file that needs it."""
    if shutil.which("objdump") is None:
        return None
    best: tuple[tuple[int, ...], str, str] = ((0,), "", "")
    for path in paths:
        out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True,
                             check=False).stdout
        for version in set(re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out)):
            key = tuple(int(p) for p in version.split("."))
            if key > best[0]:
                best = (key, version, path.name)
    return best[1], best[2]


def measure(binary: Path, work: Path) -> list[str]:
    lines = [f"binary size: {binary.stat().st_size / 1e6:.1f} MB"]
    times = cold_starts(binary, work)
    lines.append(f"cold start to first /versions: median {statistics.median(times):.2f} s "
                 f"({', '.join(f'{t:.2f}' for t in times)})")
    with smoke.serving(binary, work, work / "data", *smoke.serve_flags(binary, work)) as server:
        smoke.check_versions(server)
        time.sleep(1.0)
        idle = server.rss_kib()
        token = smoke.check_register(server, "measure")
        for content_type, image, expected in [("image/png", smoke.png_rgb(64, 48), (32, 24)),
                                              *smoke.pillow_images()]:
            smoke.check_thumbnail(server, token, image, content_type, expected)
        busy = server.rss_kib()
        unpack = server.unpack_dir
        if unpack is None:
            raise smoke.SmokeFailure("no _MEI unpack directory found in /proc/PID/maps")
        files = [p for p in unpack.rglob("*") if p.is_file()]
        unpacked = sum(p.stat().st_size for p in files)
        glibc = newest_glibc([binary, *(p for p in files if ".so" in p.name)])
        smoke.check_stop(server)
    lines += [
        f"RSS, bootloader + server ({len(server.pids)} processes): idle {idle / 1024:.1f} MiB, "
        f"after thumbnails {busy / 1024:.1f} MiB",
        f"unpacked per start: {unpacked / 1e6:.1f} MB in {unpack.parent} (removed at exit)",
        "newest GLIBC symbol version needed: "
        + (f"{glibc[0]} ({glibc[1]})" if glibc else "unknown (no objdump)"),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("binary", type=Path, help="the built executable, e.g. dist/trioserver")
    binary = p.parse_args(argv).binary.resolve()
    with tempfile.TemporaryDirectory(prefix="trioserver-measure-") as tmp:
        try:
            for line in measure(binary, Path(tmp)):
                print(line)
        except (smoke.SmokeFailure, subprocess.TimeoutExpired, OSError) as e:
            print(f"measure: FAILED: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Smoke-test the one-file executable: `python packaging/smoke_binary.py BINARY`.

Every check runs the binary under `env -i` (nothing inherited: no PATH, HOME, TMPDIR, venv) from
a fresh temporary working directory, the way an operator would run a copied file:

  --version, generate-config, register-user (offline), serve; then over HTTP /versions, the TLS
  listener (offering only X25519MLKEM768 when this Python has pyOpenSSL), register and log in,
  upload images and fetch thumbnails (Pillow inside the bundle: PNG always; JPEG with an EXIF
  rotation, animated GIF and WebP when this Python has Pillow to make them), and finally SIGTERM,
  which must exit 0 and remove the `_MEI*` directory the bootloader unpacked into.

Exits 1 with a message naming the failed check. Runs on the standard library alone (the extras
above are used when present); tests/packaging/test_binary.py reuses these functions and
packaging/measure_binary.py the server helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import selectors
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER_NAME = "example.org"
PASSWORD = "correct horse battery staple"
START_TIMEOUT_S = 60.0
THUMB = "/_matrix/client/v1/media/thumbnail"


class SmokeFailure(Exception):
    """A check failed; the message says which and why."""


def _env_i(binary: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """`env -i [K=V ...] BINARY ARGS`: the binary sees only the variables given here."""
    assigns = [f"{k}={v}" for k, v in (env or {}).items()]
    return ["env", "-i", *assigns, str(binary), *args]


def run_cli(binary: Path, *args: str, cwd: Path, stdin: str = "",
            env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    """Run one command to completion; return stdout, or raise with stderr on a non-zero exit."""
    proc = subprocess.run(_env_i(binary, *args, env=env), cwd=cwd, input=stdin, text=True,
                          capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SmokeFailure(f"`trioserver {' '.join(args)}` exited {proc.returncode}:\n"
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


# --- the offline commands -------------------------------------------------------------------

def check_version(binary: Path, cwd: Path) -> str:
    out = run_cli(binary, "--version", cwd=cwd).strip()
    if not re.fullmatch(r"trioserver \d+\.\d+\.\d+\S*", out):
        raise SmokeFailure(f"--version printed {out!r}, expected 'trioserver X.Y.Z'")
    return out


def check_generate_config(binary: Path, cwd: Path) -> None:
    out = run_cli(binary, "generate-config", "--server-name", SERVER_NAME, cwd=cwd)
    try:
        parsed = tomllib.loads(out)
    except tomllib.TOMLDecodeError as e:
        raise SmokeFailure(f"generate-config printed invalid TOML: {e}") from None
    if parsed.get("server_name") != SERVER_NAME:
        raise SmokeFailure(f"generate-config: server_name is {parsed.get('server_name')!r}")


def check_register_user(binary: Path, cwd: Path, data_dir: Path, username: str) -> str:
    """`register-user` on the data dir with no server running (this also runs the migrations)."""
    out = run_cli(binary, "register-user", "--server-name", SERVER_NAME, "--data-dir",
                  str(data_dir), username, stdin=PASSWORD + "\n", cwd=cwd)
    user_id = str(json.loads(out)["user_id"])
    if user_id != f"@{username}:{SERVER_NAME}":
        raise SmokeFailure(f"register-user created {user_id!r}")
    return user_id


def check_tmpdir_honoured(binary: Path, cwd: Path, tmpdir: Path) -> None:
    """With TMPDIR set the bootloader unpacks there, and leaves nothing behind after exit."""
    run_cli(binary, "--version", cwd=cwd, env={"TMPDIR": str(tmpdir)})
    left = sorted(p.name for p in tmpdir.iterdir())
    if left:
        raise SmokeFailure(f"the bootloader left {left} in TMPDIR={tmpdir}")


# --- the running server ---------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _unpack_dir(pid: int) -> Path | None:
    """The `_MEI*` directory the server process maps its libraries from."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    m = re.search(r"(/\S*/_MEI[^/\s]+)/", maps)
    return Path(m.group(1)) if m else None


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    url: str
    started_at: float
    stderr_path: Path
    unpack_dir: Path | None = None
    pids: list[int] = field(default_factory=list)
    stdout_lines: list[str] = field(default_factory=list)
    _pending: bytes = b""

    def listener_url(self, name: str, timeout: float = START_TIMEOUT_S) -> str:
        """The first URL of listener `name` ("trioserver" for the client one, "tls") from the
        start-up lines `NAME [VERSION] listening on URL[, URL] ...`."""
        pattern = re.compile(rf"{re.escape(name)} (?:\S+ )?listening on (\S+?)[,\s]")
        deadline = time.monotonic() + timeout
        stdout = self.proc.stdout
        assert stdout is not None
        # Raw reads: a buffered readline() could hold the next line where select() cannot see it.
        fd = stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                for line in self.stdout_lines:
                    if m := pattern.match(line + " "):
                        return m.group(1)
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, self._pending = (self._pending + chunk).split(b"\n")
                self.stdout_lines += [b.decode("utf-8", "replace") for b in lines]
        raise SmokeFailure(f"serve printed no '{name} ... listening on' line "
                           f"(exit {self.proc.poll()}); stdout: {self.stdout_lines}\n"
                           f"{self.log_tail()}")

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                token: str | None = None, content_type: str | None = None) -> HTTPResult:
        headers: dict[str, str] = {}
        data: bytes | None
        if isinstance(body, dict):
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        else:
            data = body
        if content_type:
            headers["Content-Type"] = content_type
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return HTTPResult(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as e:
            return HTTPResult(e.code, dict(e.headers.items()), e.read())

    def expect(self, what: str, result: HTTPResult, status: int = 200) -> HTTPResult:
        if result.status != status:
            raise SmokeFailure(f"{what}: HTTP {result.status} (expected {status}): "
                               f"{result.body[:500]!r}\nserver log:\n{self.log_tail()}")
        return result

    def log_tail(self, lines: int = 30) -> str:
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def rss_kib(self) -> int:
        """Resident memory of the bootloader and the server it started, together."""
        return sum(_rss_kib(pid) for pid in self.pids)

    def stop(self, timeout: float = 20.0, *, every_process: bool = False) -> int:
        """SIGTERM the bootloader, which forwards it to the server, and return the exit code.

        `every_process`: signal the server too, as systemd's default KillMode=control-group does.
        """
        if self.proc.poll() is None:
            for pid in self.pids if every_process else self.pids[:1]:
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_all(self.proc)
                raise SmokeFailure(f"serve did not exit within {timeout}s of SIGTERM") from None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def serve_flags(binary: Path, cwd: Path) -> list[str]:
    """Flags for a private test server: the metrics listener (fixed default port) off."""
    return ["--metrics-listen", ""]


@contextlib.contextmanager
def serving(binary: Path, cwd: Path, data_dir: Path, *args: str,
            env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """`serve --listen 127.0.0.1:0 --open-registration ARGS` until its "listening on" line.

    Pass `serve_flags()` in ARGS to keep the metrics listener off its fixed default port.
    """
    stderr_path = cwd / f"serve-{time.monotonic_ns()}.log"
    started_at = time.monotonic()
    with stderr_path.open("w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            _env_i(binary, "serve", "--server-name", SERVER_NAME, "--data-dir", str(data_dir),
                   "--listen", "127.0.0.1:0", "--open-registration", *args, env=env),
            cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
    server = RunningServer(proc, "", started_at, stderr_path)
    try:
        server.url = server.listener_url("trioserver")
        # `env -i` execs the bootloader (same pid), which forks the Python process.
        server.pids = [proc.pid, *_children(proc.pid)]
        server.unpack_dir = _unpack_dir(server.pids[-1])
        yield server
    finally:
        if proc.poll() is None:
            # A check failed with the server up: ask nicely first, so the bootloader removes
            # its unpack directory, then kill both processes.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill_all(proc)
                if server.unpack_dir is not None:
                    shutil.rmtree(server.unpack_dir, ignore_errors=True)
        if proc.stdout is not None:
            proc.stdout.close()


def _kill_all(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server, then the bootloader: killing only the bootloader orphans the server."""
    for pid in [*_children(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def check_versions(server: RunningServer) -> None:
    body = server.expect("GET /versions", server.request("GET", "/_matrix/client/versions"))
    if not body.json().get("versions"):
        raise SmokeFailure(f"/versions has no versions: {body.body!r}")


def check_register(server: RunningServer, username: str) -> str:
    """Register through the API (open registration, m.login.dummy); return the access token."""
    body = {"username": username, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    r = server.expect("POST /register", server.request("POST", "/_matrix/client/v3/register",
                                                      body))
    return str(r.json()["access_token"])


def check_login(server: RunningServer, user_id: str) -> str:
    """Log in as the user `register-user` created offline."""
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": PASSWORD}
    r = server.expect(f"login as {user_id}",
                      server.request("POST", "/_matrix/client/v3/login", body))
    return str(r.json()["access_token"])


def check_thumbnail(server: RunningServer, token: str, image: bytes, content_type: str,
                    expected: tuple[int, int]) -> None:
    """Upload `image`, fetch a 32x32 `scale` thumbnail, check its size (Pillow ran)."""
    r = server.expect(f"upload {content_type}", server.request(
        "POST", "/_matrix/media/v3/upload", image, token=token, content_type=content_type))
    mxc = str(r.json()["content_uri"])
    if not mxc.startswith(f"mxc://{SERVER_NAME}/"):
        raise SmokeFailure(f"upload returned {mxc!r}")
    thumb = server.expect(f"thumbnail of {content_type}", server.request(
        "GET", f"{THUMB}/{mxc[len('mxc://'):]}?width=32&height=32&method=scale", token=token))
    size = image_size(thumb.body)
    if size != expected:
        raise SmokeFailure(f"thumbnail of {content_type} is {size}, expected {expected} "
                           f"({thumb.headers.get('Content-Type')})")


BUNDLED_BINARIES = (
    # cryptography's Rust extension, with its own statically linked OpenSSL (the TLS listener).
    "cryptography/hazmat/bindings/_rust.abi3.so",
    "nacl/_sodium.abi3.so",
    "PIL/_imaging.*.so",
    "PIL/_webp.*.so",
)
BUNDLED_MODULES = ("OpenSSL.SSL", "OpenSSL.crypto", "cryptography.x509", "trioserver.cli")


def check_bundle_contents(binary: Path, unpack_dir: Path | None) -> None:
    """The native libraries are unpacked, and (when PyInstaller is importable to read the
    archive) the TLS listener's pure-Python modules are in it."""
    if unpack_dir is None:
        raise SmokeFailure("could not find the server's _MEI unpack directory in /proc/PID/maps")
    missing = [name for name in BUNDLED_BINARIES if not any(unpack_dir.glob(name))]
    if missing:
        raise SmokeFailure(f"not in the bundle: {missing}")
    try:
        from PyInstaller.archive.readers import CArchiveReader  # type: ignore[import-untyped]
    except ImportError:
        return
    pyz = CArchiveReader(str(binary)).open_embedded_archive("PYZ.pyz")
    absent = [name for name in BUNDLED_MODULES if name not in pyz.toc]
    if absent:
        raise SmokeFailure(f"modules missing from the bundle's PYZ: {absent}")


def check_stop(server: RunningServer, *, every_process: bool = False) -> None:
    """SIGTERM exits 0, and the unpacked `_MEI*` directory is gone afterwards."""
    code = server.stop(every_process=every_process)
    if code != 0:
        raise SmokeFailure(f"serve exited {code} on SIGTERM\n{server.log_tail()}")
    if server.unpack_dir is None:
        raise SmokeFailure("could not find the server's _MEI unpack directory in /proc/PID/maps")
    if server.unpack_dir.exists():
        raise SmokeFailure(f"{server.unpack_dir} still exists after the server exited")


# --- the TLS listener (builds that have one) --------------------------------------------

def tls_config(binary: Path, work: Path) -> tuple[Path, Path] | None:
    """(config, certificate): the TLS listener on 127.0.0.1:0 with a fresh self-signed
    certificate for "localhost". None when this build has no [tls] section or nothing here can
    make a certificate (this Python's cryptography, else the openssl command)."""
    sample = tomllib.loads(run_cli(binary, "generate-config", cwd=work))
    if "tls" not in sample:
        return None
    cert, key = work / "cert.pem", work / "key.pem"
    try:
        _self_signed_with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            return None
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    config = work / "tls.toml"
    config.write_text(f'[tls]\ncert = "{cert}"\nkey = "{key}"\nlisten = "127.0.0.1:0"\n',
                      encoding="utf-8")
    return config, cert


def _self_signed_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def check_tls(server: RunningServer, cafile: Path) -> str:
    """GET /versions over the TLS listener, verifying the certificate; return what was
    negotiated. With pyOpenSSL here the client offers only X25519MLKEM768, so this proves the
    bundled OpenSSL does the post-quantum hybrid; else the standard library's ssl client."""
    parts = urllib.parse.urlsplit(server.listener_url("tls"))
    address = (parts.hostname or "127.0.0.1", parts.port or 443)
    request = (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n"
               b"Connection: close\r\n\r\n")
    try:
        response, negotiated = _tls_get_post_quantum(address, cafile, request)
    except ImportError:
        response, negotiated = _tls_get_stdlib(address, cafile, request)
    if not response.startswith(b"HTTP/1.1 200") or b'"versions"' not in response:
        raise SmokeFailure(f"GET /versions over TLS answered {response[:300]!r}")
    return negotiated


def _tls_get_stdlib(address: tuple[str, int], cafile: Path, request: bytes) -> tuple[bytes, str]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(address, timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(request)
        return _read_all(conn.recv), str(conn.version())


def _tls_get_post_quantum(address: tuple[str, int], cafile: Path,
                          request: bytes) -> tuple[bytes, str]:
    from OpenSSL import SSL
    from OpenSSL._util import lib as openssl_lib

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(cafile))
    ctx.set_verify(SSL.VERIFY_PEER)
    if not openssl_lib.SSL_CTX_set1_curves_list(ctx._context, b"X25519MLKEM768"):
        raise SmokeFailure("this Python's pyOpenSSL cannot offer X25519MLKEM768")
    with socket.create_connection(address, timeout=10) as raw:
        # pyOpenSSL wants a blocking socket; a receive timeout still bounds a silent server.
        raw.settimeout(None)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
        conn = SSL.Connection(ctx, raw)
        conn.set_connect_state()
        conn.set_tlsext_host_name(b"localhost")
        try:
            conn.do_handshake()
        except SSL.Error as e:
            raise SmokeFailure(f"TLS handshake offering only X25519MLKEM768 failed: {e}") from None
        conn.sendall(request)
        response = _read_all(conn.recv, (SSL.ZeroReturnError, SSL.SysCallError))
        group = conn.get_group_name()
        if group != "X25519MLKEM768":
            raise SmokeFailure(f"TLS negotiated group {group}, expected X25519MLKEM768")
        return response, f"{conn.get_protocol_version_name()}, {group}"


def _read_all(recv: Callable[[int], bytes],
              done: tuple[type[BaseException], ...] = ()) -> bytes:
    data = b""
    while True:
        try:
            chunk = recv(65536)
        except done:
            return data
        if not chunk:
            return data
        data += chunk


# --- images made without Pillow, and sizes read without it ----------------------------------

def png_rgb(width: int, height: int) -> bytes:
    """A valid RGB PNG, from the standard library alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 128)) for x in range(width))
        for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG or baseline/progressive JPEG; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + length
    return None


def pillow_images() -> list[tuple[str, bytes, tuple[int, int]]]:
    """(content type, 64x48 image, expected 32x32 thumbnail size) for JPEG, GIF and WebP.

    Made with this Python's Pillow when it has one (the venv does); else none. The JPEG carries
    EXIF orientation 6 (rotate 90), so its thumbnail is portrait: EXIF handling works too.
    """
    try:
        from PIL import Image
    except ImportError:
        return []
    frames = [Image.new("RGB", (64, 48), (60 * i, 120, 200)) for i in range(3)]
    out: list[tuple[str, bytes, tuple[int, int]]] = []
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    frames[0].save(buf, "JPEG", exif=exif)
    out.append(("image/jpeg", buf.getvalue(), (24, 32)))
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        out.append((f"image/{fmt.lower()}", buf.getvalue(), (32, 24)))
    return out


# --- the whole run --------------------------------------------------------------------------

def run_checks(binary: Path, work: Path, report: Callable[[str], None]) -> None:
    """Every check in order, each reported as it passes."""
    report(check_version(binary, work))
    check_generate_config(binary, work)
    report("generate-config prints valid TOML")
    private_tmp = work / "private-tmp"
    private_tmp.mkdir()
    check_tmpdir_honoured(binary, work, private_tmp)
    report("TMPDIR is honoured and cleaned up")
    data_dir = work / "data"
    offline_user = check_register_user(binary, work, data_dir, "offline")
    report(f"register-user (offline) created {offline_user}")
    args = serve_flags(binary, work)
    tls = tls_config(binary, work)
    if tls is not None:
        args += ["--config", str(tls[0])]
    with serving(binary, work, data_dir, *args) as server:
        check_versions(server)
        report(f"serve answered /versions at {server.url} (unpacked in {server.unpack_dir})")
        check_bundle_contents(binary, server.unpack_dir)
        report("bundle holds cryptography's Rust extension, pyOpenSSL, PyNaCl, Pillow")
        if tls is not None:
            report(f"TLS listener answers /versions ({check_tls(server, tls[1])})")
        else:
            report("TLS listener not checked (no [tls] in this build, or no certificate tool)")
        check_login(server, offline_user)
        token = check_register(server, "smoke")
        report("register over the API and login of the offline user work")
        made = [("image/png", png_rgb(64, 48), (32, 24)), *pillow_images()]
        for content_type, image, expected in made:
            check_thumbnail(server, token, image, content_type, expected)
        report("thumbnails: " + ", ".join(c for c, _, _ in made)
               + ("" if len(made) > 1 else " (no Pillow here to make JPEG/GIF/WebP samples)"))
        check_stop(server)
        report("SIGTERM: exit 0 and the unpack directory is removed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("binary", type=Path, help="the built executable, e.g. dist/trioserver")
    binary = p.parse_args(argv).binary.resolve()
    if not os.access(binary, os.X_OK):
        print(f"smoke: {binary} is not an executable file (run `make binary`)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="trioserver-smoke-") as tmp:
        try:
            run_checks(binary, Path(tmp), lambda msg: print(f"ok: {msg}", flush=True))
        except (SmokeFailure, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
            print(f"smoke: FAILED: {e}", file=sys.stderr)
            return 1
    print("smoke: all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

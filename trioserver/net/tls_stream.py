"""A trio stream that speaks TLS through pyOpenSSL memory BIOs, and a listener that makes them.

hypercorn's TCP server drives any stream with `do_handshake()`, `selected_alpn_protocol()` and
a `transport_stream` whose `.socket` it reads addresses from; this is that stream. OpenSSL never
touches the socket: ciphertext moves between the BIOs and the trio socket here, so the event loop
stays in charge of every wait and cancellation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio
from OpenSSL import SSL

log = logging.getLogger("trioserver.tls")

RECEIVE_SIZE = 65536
CLOSE_NOTIFY_TIMEOUT_S = 1.0

HandshakeObserver = Callable[[str, str], None]


class TLSStream(trio.abc.Stream):
    """The server side of one TLS connection over a trio socket stream."""

    def __init__(
        self,
        transport_stream: trio.SocketStream,
        context: SSL.Context,
        on_handshake: HandshakeObserver | None = None,
    ) -> None:
        self.transport_stream = transport_stream
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self._on_handshake = on_handshake
        # Ciphertext leaves in BIO order; the lock keeps two flushes from interleaving.
        self._send_lock = trio.Lock()
        self._handshake_lock = trio.Lock()
        self._handshake_done = False
        self._closed = False

    # -- what hypercorn asks of a TLS stream --------------------------------------------

    async def do_handshake(self) -> None:
        async with self._handshake_lock:
            if self._handshake_done:
                return
            while True:
                try:
                    self._conn.do_handshake()
                    break
                except SSL.WantReadError:
                    await self._flush()
                    if not await self._pull():
                        raise trio.BrokenResourceError("peer closed during handshake") from None
                except SSL.Error as e:
                    # Send the alert OpenSSL queued (e.g. handshake_failure), then give up.
                    with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT_S):
                        await self._flush_quietly()
                    raise trio.BrokenResourceError(f"TLS handshake failed: {e}") from None
            await self._flush()
            self._handshake_done = True
        if self._on_handshake is not None:
            self._on_handshake(self.group_name() or "none", self.version())

    def selected_alpn_protocol(self) -> str | None:
        proto = self._conn.get_alpn_proto_negotiated()
        return proto.decode("ascii") if proto else None

    def group_name(self) -> str | None:
        """The negotiated key agreement group, e.g. "X25519MLKEM768"."""
        return self._conn.get_group_name()

    def version(self) -> str:
        return self._conn.get_protocol_version_name()

    # -- trio.abc.Stream ------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        await self.do_handshake()
        while True:
            try:
                data: bytes = self._conn.recv(max_bytes or RECEIVE_SIZE)
                return data
            except SSL.WantReadError:
                # Reading may have produced records to send (key updates, tickets).
                await self._flush()
                if not await self._pull():
                    # EOF without close_notify: treated as EOF, as browsers and HTTP do.
                    return b""
            except SSL.ZeroReturnError:
                return b""
            except SSL.SysCallError:
                return b""
            except SSL.Error as e:
                raise trio.BrokenResourceError(f"TLS error: {e}") from None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        await self.do_handshake()
        view = memoryview(data)
        while view:
            try:
                sent = self._conn.send(view)
            except SSL.Error as e:
                raise trio.BrokenResourceError(f"TLS error: {e}") from None
            view = view[sent:]
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._handshake_done:
                try:
                    self._conn.shutdown()
                except SSL.Error:
                    pass
                else:
                    with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT_S):
                        await self._flush_quietly()
        finally:
            await self.transport_stream.aclose()

    # -- moving ciphertext ----------------------------------------------------------------

    async def _flush(self) -> None:
        async with self._send_lock:
            while True:
                try:
                    chunk = self._conn.bio_read(RECEIVE_SIZE)
                except SSL.WantReadError:
                    return
                if not chunk:
                    return
                await self.transport_stream.send_all(chunk)

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                 trio.BusyResourceError):
            await self._flush()

    async def _pull(self) -> bool:
        """Feed the next ciphertext from the socket to OpenSSL; False at end of stream."""
        data = await self.transport_stream.receive_some(RECEIVE_SIZE)
        if not data:
            self._conn.bio_shutdown()
            return False
        self._conn.bio_write(data)
        return True


class TLSListener(trio.abc.Listener[TLSStream]):
    """Accepts TCP connections and wraps each in a TLSStream (the handshake runs later)."""

    def __init__(
        self,
        transport_listener: trio.SocketListener,
        context: SSL.Context,
        on_handshake: HandshakeObserver | None = None,
    ) -> None:
        self.transport_listener = transport_listener
        self.context = context
        self._on_handshake = on_handshake

    async def accept(self) -> TLSStream:
        stream = await self.transport_listener.accept()
        return TLSStream(stream, self.context, self._on_handshake)

    async def aclose(self) -> None:
        await self.transport_listener.aclose()

"""A TCP proxy on loopback that can cut or hang the service behind it (S3, in the tests).

- ``refuse()``: the listening socket closes, so new connections are refused, and every
  open connection is reset: S3 is gone.
- ``hang()``: connections are still accepted, but nothing is forwarded either way: S3
  accepts and never answers. Open connections freeze mid-request.
- ``heal()``: back to forwarding. Frozen connections resume; connections accepted while
  hung are reset (a client that waited sees the error and retries).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close with RST, like a server that died, not a polite FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._hung: list[socket.socket] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._closed = False
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> TcpProxy:
        self._listen()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._flowing.set()
        self._close_listener()
        self._reset_all()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults -------------------------------------------------------------------------------

    def refuse(self) -> None:
        self._close_listener()
        self._reset_all()

    def hang(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        # Under the lock that _accept holds while it decides: a connection accepted while
        # hung is either among those reset here or forwarded, never left waiting (a client
        # left so waited out botocore's 60 s read timeout, failing an outage test by 1 s).
        with self._lock:
            hung, self._hung = self._hung, []
            self._flowing.set()
        for sock in hung:
            _reset(sock)
        if self._listener is None:
            self._listen()

    # -- plumbing -----------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()

    def _reset_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
            hung, self._hung = self._hung, []
        for a, b in pairs:
            _reset(a)
            _reset(b)
        for sock in hung:
            _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: refuse() or the end
            with self._lock:
                hung = not self._flowing.is_set()
                if hung:
                    self._hung.append(client)
            if hung:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            try:
                selector.register(client, selectors.EVENT_READ)
                selector.register(upstream, selectors.EVENT_READ)
                while not self._closed:
                    # Frozen: read nothing, forward nothing, until healed.
                    if not self._flowing.wait(0.2):
                        continue
                    for key, _ in selector.select(0.2):
                        if not self._flowing.is_set():
                            break
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(65536)
                        if not data:
                            return
                        other[sock].sendall(data)
            except (OSError, ValueError):
                return  # reset by refuse(), or the peer went away
            finally:
                with self._lock:
                    if (client, upstream) in self._pairs:
                        self._pairs.remove((client, upstream))
                client.close()
                upstream.close()

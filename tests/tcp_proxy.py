"""A TCP forwarder on 127.0.0.1 that a test can cut and restore: the database or Redis "goes away"
for the processes behind it while the machine's server keeps running for everyone else.

One thread and one selector carry every connection. `cut("reset")` resets every open
connection (RST, as when a server dies or a firewall rejects) and each new one at once;
`cut("blackhole")` stops forwarding and leaves every socket open, new ones accepted but unanswered
(a partition: nothing arrives, nothing fails until a timeout says so). `restore()` forwards again:
after a blackhole the held connections carry on where they stopped and the waiting ones are
connected.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Literal

Mode = Literal["reset", "blackhole"]
_CHUNK = 65536


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), not a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """`TcpProxy(5432).start()` returns the port to point a client at instead of 5432."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._commands: list[tuple[str, Mode | None, threading.Event]] = []
        self._pairs: set[_Pair] = set()
        self._waiting: list[socket.socket] = []  # accepted during a blackhole
        self.mode: Mode | None = None  # None: forwarding
        self.accepted = 0
        self.resets = 0
        self._thread = threading.Thread(
            target=self._loop, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._stopped = False

    def start(self) -> int:
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        return self.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- control (any thread) ----------------------------------------------------------------------
    def cut(self, mode: Mode = "reset") -> None:
        self._command("cut", mode)

    def restore(self) -> None:
        self._command("restore", None)

    def close(self) -> None:
        if self._thread.is_alive():
            self._command("close", None)
            self._thread.join(5)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def _command(self, name: str, mode: Mode | None) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((name, mode, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise RuntimeError(f"tcp proxy on {self.port}: {name} was not applied within 10 s")

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(timeout=1.0):
                if key.data == "wake":
                    self._wake_r.recv(4096)
                    self._apply_commands()
                elif key.data == "accept":
                    self._accept()
                else:
                    self._pump(*key.data)
        for sock in [self._listener, self._wake_r, self._wake_w, *self._waiting]:
            with contextlib.suppress(OSError):
                sock.close()

    def _apply_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for name, mode, done in commands:
            if name == "cut":
                self.mode = mode
                for pair in list(self._pairs):
                    if mode == "reset":
                        self._drop(pair)
                    else:
                        self._watch(pair, reading=False)
            elif name == "restore":
                was, self.mode = self.mode, None
                if was == "blackhole":
                    for pair in list(self._pairs):
                        self._watch(pair, reading=True)
                waiting, self._waiting = self._waiting, []
                for client in waiting:
                    self._connect(client)
            elif name == "close":
                for pair in list(self._pairs):
                    self._drop(pair)
                self._stopped = True
            done.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            if self.mode == "reset":
                self.resets += 1
                _reset(client)
            elif self.mode == "blackhole":
                self._waiting.append(client)
            else:
                self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)  # the real server refuses: so does the proxy
            return
        for sock in (client, upstream):
            # select() says when to read; a send may wait up to 5 s for a slow reader
            sock.settimeout(5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        with self._lock:
            self._pairs.add(pair)
        self._watch(pair, reading=True)

    def _watch(self, pair: _Pair, *, reading: bool) -> None:
        for sock, other in ((pair.client, pair.upstream), (pair.upstream, pair.client)):
            registered = self._registered(sock)
            if reading and not registered:
                self._selector.register(sock, selectors.EVENT_READ, (pair, sock, other))
            elif not reading and registered:
                self._selector.unregister(sock)

    def _registered(self, sock: socket.socket) -> bool:
        try:
            self._selector.get_key(sock)
        except (KeyError, ValueError):
            return False
        return True

    def _pump(self, pair: _Pair, sock: socket.socket, other: socket.socket) -> None:
        if pair not in self._pairs or self.mode is not None:
            return
        try:
            data = sock.recv(_CHUNK)
            if data:
                other.sendall(data)
        except OSError:
            data = b""
        if not data:  # closed by one side, or a socket error: both go
            self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        for sock in (pair.client, pair.upstream):
            if self._registered(sock):
                self._selector.unregister(sock)
            _reset(sock)
        self.resets += 1

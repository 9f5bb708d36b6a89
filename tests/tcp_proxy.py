"""A loopback TCP proxy whose link can be cut: a real network outage between worker and database.

It can also cut at the worst moment for a write: right after the server has committed a transaction
but before the client hears so (`cut_after_commit`).
"""

from __future__ import annotations

import socket
import threading


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = self._free_port()
        self._up = threading.Event()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._armed: bytes | None = None
        self._fired = threading.Event()
        self.restore()

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def restore(self) -> None:
        """Listen again: new connections get through."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._up.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones, as a database restart does."""
        with self._lock:
            self._up.clear()
        try:
            # Wakes the accept() under way, so the port is free for restore() at once.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self._connections.clear()

    def close(self) -> None:
        self.cut()

    def cut_after_commit(self, statement: bytes) -> threading.Event:
        """On the next connection that sends `statement` and then COMMIT, let the COMMIT through,
        drop the server's answer, cut every connection and listen again at once: the write landed,
        the client saw the connection die. The event is set once that has happened."""
        self._fired = threading.Event()
        self._armed = statement
        return self._fired

    def _accept(self, listener: socket.socket) -> None:
        while self._up.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._up.is_set():  # cut while this link was being made: it never was
                    client.close()
                    upstream.close()
                    continue
                self._connections += [client, upstream]
            link = {"saw_statement": False, "committing": False}
            for source, sink, upward in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pipe, args=(source, sink, upward, link), daemon=True
                ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upward: bool, link: dict) -> None:
        try:
            while data := source.recv(65536):
                armed = self._armed
                if upward and armed is not None:
                    link["saw_statement"] |= armed in data
                    link["committing"] |= link["saw_statement"] and b"COMMIT" in data
                elif not upward and link["committing"] and self._armed is not None:
                    self._armed = None  # the server answered the COMMIT: that answer is lost
                    self._fired.set()
                    self.cut()
                    self.restore()
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

"""rl's reward across the launcher's process boundary.

Under `launch:` the policy trains in child processes (one per rank), but the reward stays in the
stage's process: a judge's calls go through the run's cache and cost accounting there, a PM is
loaded once, and rollouts.jsonl has one writer. The stage serves rewards on 127.0.0.1 with
`multiprocessing.connection` (authenticated by a random key handed to the children in an
environment variable, never written to disk); each rank's reward function is a `RemoteRollouts`
that sends its shard of completions and waits for the rewards. Requests are answered one at a
time in the stage's main thread — the scorer runs exactly where it runs without a launcher.

The socket is local: every rank must run on the stage's machine (one node, many GPUs).
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from multiprocessing.connection import AuthenticationError, Client, Connection, Listener, wait
from typing import Any, Callable, Sequence

ADDRESS_ENV = "LADDER_REWARD_ADDRESS"
AUTHKEY_ENV = "LADDER_REWARD_AUTHKEY"

Handler = Callable[[Sequence[int], Sequence[str], int, Sequence[int]], list[float]]
"""(example indices, completion texts, optimizer step, completion tokens) → rewards: what a rank asks."""


class RewardServer:
    """Answers the ranks' reward requests with `handler` while the launched training runs."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.authkey = secrets.token_bytes(32)
        self.listener = Listener(("127.0.0.1", 0), authkey=self.authkey)
        self.error: BaseException | None = None
        """The first exception the handler raised (re-raised by the stage when training failed)."""
        self.refused = 0
        """Connections refused for a wrong key."""
        self._new: queue.Queue[Connection] = queue.Queue()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def env(self) -> dict[str, str]:
        host, port = self.listener.address
        return {ADDRESS_ENV: f"{host}:{port}", AUTHKEY_ENV: self.authkey.hex()}

    def _accept(self) -> None:
        # Only the handshake happens on this thread; requests are answered on the caller's (serve).
        while True:
            try:
                conn = self.listener.accept()
            except AuthenticationError:  # a client without the key: refused, keep serving
                self.refused += 1
                continue
            except OSError:  # closed
                return
            self._new.put(conn)

    def serve(self, process: Any, poll: float = 0.2) -> None:
        """Answer requests until `process` (the launcher) ends."""
        conns: list[Connection] = []
        while process.poll() is None:
            while not self._new.empty():
                conns.append(self._new.get())
            if not conns:
                try:
                    conns.append(self._new.get(timeout=poll))
                except queue.Empty:
                    pass
                continue
            for conn in wait(conns, timeout=poll):
                try:
                    indices, texts, step, tokens = conn.recv()
                except (EOFError, OSError):  # that rank finished (or died)
                    conns.remove(conn)
                    conn.close()
                    continue
                try:
                    reply: tuple[str, Any] = ("ok", self.handler(indices, texts, step, tokens))
                except Exception as exc:  # noqa: BLE001 - sent to the rank, re-raised here after training
                    self.error = self.error or exc
                    reply = ("error", str(exc))
                conn.send(reply)
        for conn in conns:
            conn.close()

    def close(self) -> None:
        self.listener.close()

    def __enter__(self) -> RewardServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RemoteRollouts:
    """A rank's side: the same call as rl_local.Rollouts, answered by the stage's RewardServer."""

    def __init__(self, address: str | None = None, authkey: str | None = None):
        address = address or os.environ.get(ADDRESS_ENV)
        authkey = authkey or os.environ.get(AUTHKEY_ENV)
        if not address or not authkey:
            raise SystemExit(f"{ADDRESS_ENV} and {AUTHKEY_ENV} are not set: rl's launched trainer is started "
                             f"by the rl stage (launch:), which serves the reward; it cannot run on its own")
        host, port = address.rsplit(":", 1)
        self.address = (host, int(port))
        self.authkey = bytes.fromhex(authkey)
        self._conn: Connection | None = None

    def __call__(self, indices: Sequence[int], texts: Sequence[str], step: int, tokens: Sequence[int]) -> list[float]:
        if self._conn is None:
            self._conn = Client(self.address, authkey=self.authkey)
        self._conn.send((list(indices), list(texts), step, list(tokens)))
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"the reward failed in the rl stage's process: {value}")
        return value

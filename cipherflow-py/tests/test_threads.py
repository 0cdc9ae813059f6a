"""The GIL is released while opening: another Python thread keeps running meanwhile."""

from __future__ import annotations

import os
import threading
import time

import cipherflow

MiB = 1 << 20


def test_gil_released_during_open(alice: cipherflow.PrivateKey) -> None:
    sealed = cipherflow.seal_bytes(os.urandom(MiB) * 32, [alice.public_key()])
    spans: list[float] = []

    def work() -> None:
        t = time.perf_counter()
        cipherflow.open_bytes(sealed, alice)
        spans.append(time.perf_counter() - t)

    thread = threading.Thread(target=work)
    last = time.perf_counter()
    longest_pause = 0.0
    thread.start()
    while thread.is_alive():
        now = time.perf_counter()
        longest_pause = max(longest_pause, now - last)
        last = now
    thread.join()
    # Were the GIL held through the call, this thread would stall for all of it.
    assert longest_pause < spans[0] / 2, (longest_pause, spans[0])

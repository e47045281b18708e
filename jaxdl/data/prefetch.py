"""Prefetching: build and transfer the next batches on a background thread while the current step runs."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator


def prefetch(batches: Iterator[dict[str, Any]], put: Callable[[dict[str, Any]], Any], size: int = 2) -> Iterator[Any]:
    """Yield ``put(batch)`` for each batch while the next ``size`` are already being built and transferred.

    A background thread assembles host batches (numpy indexing releases the GIL) and starts their
    transfers, so the step loop never waits on the input pipeline when the pipeline keeps up.
    """
    q: queue.Queue = queue.Queue(maxsize=max(size, 1))
    done = object()
    stop = threading.Event()

    def offer(item: Any) -> bool:
        # A bounded wait, so the thread ends when the consumer stops early instead of blocking forever.
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def producer() -> None:
        try:
            for batch in batches:
                if not offer(put(batch)):
                    return
            offer(done)
        except BaseException as exc:  # re-raised in the consumer, never swallowed
            offer(exc)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()

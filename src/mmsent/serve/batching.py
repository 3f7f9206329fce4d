"""Dynamic micro-batching: concurrent single-item requests (and the rows of batch requests) share one forward pass.

The model runs one batch at a time anyway (a few CPU cores gain nothing from parallel passes), so while it works
the requests that arrive wait; the batcher then runs them together, up to ``max_items``, waiting at most ``window``
seconds after the first for others to join. Requests with different options (explanations, overlay) go in separate
batches. An error in a batch reaches every request of that batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

logger = logging.getLogger("mmsent.serve")


class MicroBatcher:
    """Collects ``submit`` calls into batches for ``run(key, items) -> results`` (one result per item, in order).

    Args:
        run: computes a batch; called from the batcher's own thread.
        max_items: most items in one batch.
        window: seconds a batch waits for more items after its first arrived.
    """

    def __init__(self, run: Callable[[Hashable, list[Any]], list[Any]], max_items: int = 8,
                 window: float = 0.005) -> None:
        self.run, self.max_items, self.window = run, max(1, max_items), window
        self._cond = threading.Condition()
        self._pending: list[tuple[Hashable, Any, Future]] = []
        self.batches: deque[int] = deque(maxlen=1000)  # sizes of the latest batches (for tests and tuning)
        threading.Thread(target=self._loop, name="mmsent-batcher", daemon=True).start()

    def submit(self, key: Hashable, item: Any) -> Future:
        """Queues one item; its result (or the batch's exception) arrives through the future."""
        future: Future = Future()
        with self._cond:
            self._pending.append((key, item, future))
            self._cond.notify_all()
        return future

    def _next_batch(self) -> list[tuple[Hashable, Any, Future]]:
        with self._cond:
            while not self._pending:
                self._cond.wait()
            deadline = time.monotonic() + self.window
            while len(self._pending) < self.max_items and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            key = self._pending[0][0]
            batch = [p for p in self._pending if p[0] == key][: self.max_items]
            taken = {id(p) for p in batch}  # by identity: items (decoded images) are not compared by value
            self._pending = [p for p in self._pending if id(p) not in taken]
            # a request whose client went away cancelled its future: it is not computed
            return [p for p in batch if p[2].set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while True:  # nothing may end this thread: every later request would wait forever
            try:
                batch = self._next_batch()
                if not batch:
                    continue
                self.batches.append(len(batch))
                try:
                    results = self.run(batch[0][0], [item for _, item, _ in batch])
                except Exception as exc:
                    for _, _, future in batch:
                        future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(batch, results):
                    future.set_result(result)
            except Exception:
                logger.exception("micro-batcher: unexpected error; continuing")

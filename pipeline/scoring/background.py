"""The batch scorer's stages on both cores: chunks read ahead in one thread, written behind in
another, while the calling thread scores.

Parsing CSV, pyarrow's compute kernels, numpy's array operations and writing CSV all release
the GIL, so reading the next chunk and writing the previous one overlap scoring the current one.
Queues hold at most `depth` chunks, so memory stays flat; order is kept (one reader, one writer).
An error in a stage reaches the calling thread as itself; an interruption (Ctrl-C, SIGTERM,
delivered to the calling thread) stops both threads before the caller removes its temporary files.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

STOP_POLL_SECONDS = 0.1


def blas_on_one_thread():
    """A context in which numpy's BLAS (OpenBLAS) multiplies on the calling thread only. The scorer's
    stages already keep both cores busy; BLAS's own threads, woken by every small product (the
    posterior features' priors, the causes' stack), spun beside them: 1M rows took 17.7-18.0 s of
    CPU and 9.2-9.4 s instead of 11.2-11.8 s and 6.4-6.7 s (the default model with its posterior
    features replaced by zeros, two alternating runs each, with OPENBLAS_NUM_THREADS=1 set by
    hand). It limits the BLAS libraries loaded so far: numpy's (the scorer imports no scipy)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def arrow_memory_returned_promptly() -> None:
    """Arrow on jemalloc where the build has it: chunk after chunk it gives freed memory back (or
    reuses it) more readily than the default allocator, so a scorer's peak memory is what it holds,
    not what the allocator kept (at 200k rows, 265 MB instead of 300-320 MB). For the process."""
    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc keeps its default
        pa.set_memory_pool(pa.jemalloc_memory_pool())


class ReadAhead:
    """Iterate `items` in a worker thread, up to `depth` items ahead of the consumer."""

    def __init__(self, items: Iterable, depth: int = 2, name: str = "read-ahead"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(items),), name=name, daemon=True)
        self._thread.start()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=STOP_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
            self._put(("done", None))
        except BaseException as err:  # not handled here: handed to the consumer, raised there
            self._put(("error", err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's own clean-up (the source file) runs in this thread

    def __iter__(self) -> Iterator:
        while True:
            try:  # polled, so that a consumer in another thread (a chained ReadAhead) ends when this stops
                kind, value = self._queue.get(timeout=STOP_POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if kind == "item":
                yield value
            elif kind == "done":
                return
            else:
                raise value

    def stop(self) -> None:
        """Ask the thread to stop (without waiting: see `close`); iterating then ends too."""
        self._stop.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop reading ahead (an unfinished item is dropped) and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout)


class WriteBehind:
    """Call `write(item)` for each `put(item)`, in order, in a worker thread."""

    def __init__(self, write: Callable[[object], None], depth: int = 2, name: str = "write-behind"):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is None and not self._abandoned:
                try:
                    self._write(item)
                except BaseException as err:  # not handled here: raised in the caller
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: object) -> None:
        self._raise()
        self._queue.put(item)

    def finish(self) -> None:
        """Wait until everything put is written; raise the writing error, if any."""
        self._queue.put(_END)
        self._thread.join()
        self._raise()

    def abandon(self, timeout: float = 10.0) -> None:
        """Stop writing (what is still queued is dropped) and wait for the thread."""
        self._abandoned = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put(_END, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


_END = object()

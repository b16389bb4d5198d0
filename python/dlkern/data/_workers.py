"""Worker processes for ``DataLoader(num_workers=N)``.

The main process decides the order (it computes every batch's index list, exactly as
with ``num_workers=0``); workers only load: each gets (task id, indices) on its own
queue and answers (task id, pickled batch) on a shared result queue; the main process
puts results back in task order. Batches are pickled inside the worker so that a batch
that cannot be pickled becomes an ordinary worker error instead of a message lost in
the queue's feeder thread (which would leave the main process waiting for ever).
"""

from __future__ import annotations

import os
import pickle
import queue
import random
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

# How often a waiting side checks that the other one is still alive (seconds).
_POLL_S = 0.5
# How long shutdown waits for a worker to leave on its own before terminating it.
_JOIN_S = 5.0


@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker (as in PyTorch)."""
    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: Optional[WorkerInfo] = None


def get_worker_info() -> Optional[WorkerInfo]:
    """Inside a DataLoader worker: its id, the number of workers, its seed and its copy
    of the dataset; None in the main process."""
    return _worker_info


class _WorkerError:
    """An exception raised in a worker, carried to the main process as its type and
    traceback text (the exception object itself may not pickle)."""

    def __init__(self, worker_id: int, where: str):
        exc_type, exc, _ = sys.exc_info()
        self.exc_type = exc_type
        self.message = (f"Caught {exc_type.__name__} {where} in DataLoader worker process {worker_id}.\n"
                        f"Original Traceback (most recent call last):\n"
                        + "".join(traceback.format_exception(exc_type, exc, exc.__traceback__)[1:]))

    def reraise(self):
        # The worker's exception type where it accepts a message (as PyTorch does), so
        # `except ValueError` in user code still works; RuntimeError otherwise.
        try:
            error = self.exc_type(self.message)
        except Exception:
            error = None
        if not isinstance(error, BaseException) or isinstance(error, KeyError):
            # KeyError would print the message as a quoted repr, newlines escaped.
            error = RuntimeError(self.message)
        raise error


def _seed_worker(seed: int):
    from ..generator import manual_seed

    random.seed(seed)
    np.random.seed(seed % 2**32)
    manual_seed(seed)


def _worker_loop(fetch, index_queue, result_queue, worker_id, num_workers, seed, init_fn, parent_pid):
    global _worker_info
    try:
        _seed_worker(seed)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, fetch.dataset)
        init_error = None
        if init_fn is not None:
            init_fn(worker_id)
    except Exception:
        init_error = _WorkerError(worker_id, "in worker_init_fn")
    try:
        while True:
            try:
                task = index_queue.get(timeout=_POLL_S)
            except queue.Empty:
                if os.getppid() != parent_pid:  # the main process died: do not linger
                    break
                continue
            if task is None:
                break
            key, indices = task
            try:
                result = init_error if init_error is not None else fetch(indices)
                payload = pickle.dumps(result)
            except Exception:
                payload = pickle.dumps(_WorkerError(worker_id, "while loading a batch"))
            result_queue.put((key, payload))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group; the main process reports it
    # Results still in the pipe are no longer wanted (shutdown or orphaned): exiting
    # must not wait for the main process to read them.
    result_queue.cancel_join_thread()


class WorkerPool:
    """``num_workers`` processes with one index queue each and a shared result queue."""

    def __init__(self, fetch, num_workers, context, seed, init_fn):
        self.num_workers = num_workers
        self.result_queue = context.Queue()
        self.index_queues = []
        self.processes = []
        self.epoch = 0
        self.closed = False
        try:
            for worker_id in range(num_workers):
                index_queue = context.Queue()
                # Index lists are tiny; never let exit wait on the feeder thread.
                index_queue.cancel_join_thread()
                process = context.Process(
                    target=_worker_loop, daemon=True, name=f"dlkern-DataLoader-{worker_id}",
                    args=(fetch, index_queue, self.result_queue, worker_id, num_workers,
                          seed + worker_id, init_fn, os.getpid()))
                self.index_queues.append(index_queue)
                self.processes.append(process)
                process.start()
        except BaseException:
            # e.g. a dataset that spawn cannot pickle: stop the workers already running
            self.processes = [p for p in self.processes if p.pid is not None]
            self.shutdown()
            raise

    def check_alive(self):
        dead = [p for p in self.processes if not p.is_alive()]
        if dead:
            pids = ", ".join(str(p.pid) for p in dead)
            codes = ", ".join(str(p.exitcode) for p in dead)
            self.shutdown()
            raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly (exit code(s) {codes})")

    def shutdown(self):
        if self.closed:
            return
        self.closed = True
        for index_queue, process in zip(self.index_queues, self.processes):
            if process.is_alive():
                try:
                    index_queue.put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + _JOIN_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join()
        for q in self.index_queues + [self.result_queue]:
            q.cancel_join_thread()
            q.close()


class MultiProcessIter:
    """One epoch over ``batches`` (a list of index arrays, or single indices) loaded by
    ``pool``; results come back in the order of ``batches``."""

    def __init__(self, pool: WorkerPool, batches, prefetch_factor: int, timeout: float, owns_pool: bool):
        self.pool = pool
        pool.epoch += 1
        self.epoch = pool.epoch  # results of an abandoned earlier epoch are dropped
        self.batches = batches
        self.timeout = timeout
        self.owns_pool = owns_pool
        self.sent = 0
        self.next = 0
        self.ready = {}
        self.limit = prefetch_factor * pool.num_workers
        self.done = False
        self._dispatch()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.batches)

    def _dispatch(self):
        while self.sent < len(self.batches) and self.sent - self.next < self.limit:
            worker = self.sent % self.pool.num_workers  # round robin, as PyTorch
            self.pool.index_queues[worker].put(((self.epoch, self.sent), self.batches[self.sent]))
            self.sent += 1

    def _receive(self):
        start = time.monotonic()
        while True:
            wait = _POLL_S if self.timeout <= 0 else min(_POLL_S, max(0.0, start + self.timeout - time.monotonic()))
            try:
                (epoch, task), payload = self.pool.result_queue.get(timeout=wait)
            except queue.Empty:
                self.pool.check_alive()
                if self.timeout > 0 and time.monotonic() - start >= self.timeout:
                    self.close()
                    raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds") from None
                continue
            if epoch == self.epoch:
                self.ready[task] = payload
                return

    def __next__(self):
        if self.done:
            raise StopIteration
        if self.next == len(self.batches):
            self.close()
            raise StopIteration
        try:
            while self.next not in self.ready:
                self._receive()
        except BaseException:
            self.close()
            raise
        result = pickle.loads(self.ready.pop(self.next))
        self.next += 1
        if isinstance(result, _WorkerError):
            self.close(force=True)
            result.reraise()
        self._dispatch()
        return result

    def close(self, force: bool = False):
        """End the epoch; shut the workers down unless they persist across epochs."""
        if self.done:
            return
        self.done = True
        if self.owns_pool or force:
            self.pool.shutdown()

    def __del__(self):
        self.close()

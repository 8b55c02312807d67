"""A MultiThreadedExecutor that does not starve its own worker threads.

rclpy's ``MultiThreadedExecutor`` (7.x, the Jazzy wheels) hands a ready callback to its thread
pool and, on the next wait, yields the same task again as long as no worker has started it:
the task is "not executing and not done" while it sits in the pool's queue. The spin thread
then submits it again and again without ever sleeping in the wait set, holding the GIL, so
the workers barely run. Measured here: a policy node fed a 30 Hz camera and 100 Hz states
ran at 100 % CPU and produced about 2 commands/s of the 30 requested, its frames going stale
(upstream: ros2/rclpy#1452, fixed in later rclpy releases).

``ResponsiveExecutor`` submits a task once; when the wait yields a task that is still queued,
it waits (without the GIL) until a worker picks that task up instead of submitting it again.
Everything else is rclpy's executor unchanged.
"""

from __future__ import annotations

import threading
from typing import Callable

from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)

QUEUED_WAIT_S = 0.005  # longest wait for a worker to pick up a re-yielded queued task


class ResponsiveExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` that submits each ready task to its pool only once."""

    def __init__(self, num_threads: int | None = None, **kwargs) -> None:
        super().__init__(num_threads=num_threads, **kwargs)
        self._queued: dict[object, threading.Event] = {}  # submitted, not started yet
        self._queued_lock = threading.Lock()

    def _run(self, task, started: threading.Event) -> None:
        with self._queued_lock:
            self._queued.pop(task, None)
        started.set()
        task()

    def _spin_once_impl(self, timeout_sec=None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            task, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        with self._queued_lock:
            started = self._queued.get(task)
            if started is None:
                started = self._queued[task] = threading.Event()
                submit = True
            else:
                submit = False
        if not submit:
            started.wait(QUEUED_WAIT_S)  # let a worker take it rather than spin on it
            return
        self._executor.submit(self._run, task, started)
        self._futures.append(task)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exception of a callback

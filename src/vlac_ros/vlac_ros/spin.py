"""The ``main()`` of every node: init, spin, and shut down cleanly whatever happens."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor


def run_node(node_factory: Callable[[], object], args: list[str] | None = None,
             executor_factory: Callable[[], Executor] = SingleThreadedExecutor) -> None:
    """Create the node, spin it until Ctrl-C or shutdown, then destroy it and shut down.

    A ValueError while constructing the node is an invalid configuration: it is printed with
    the bad value and the process exits with status 2 instead of a traceback. The executor
    and node are shut down in ``finally`` so an interrupted process never hangs. A SIGTERM
    (or SIGINT) that shuts the context down while the executor builds its wait set is a
    normal shutdown too, not an error: the process exits 0.
    """
    rclpy.init(args=args)
    executor = executor_factory()
    node = None
    try:
        node = node_factory()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # rclpy's signal handler shut the context down between the executor's ok() check and
        # its wait set ('the given context is not valid'): the same external shutdown.
        if executor.context.ok():
            raise
    except ValueError as err:
        print(f'invalid configuration: {err}', file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()

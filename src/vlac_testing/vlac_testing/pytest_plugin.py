"""pytest plugin (vlac_testing's ``pytest11`` entry point): the ``ros_graph`` fixture.

It also orders the collection by the ``slow(seconds)`` module marker, slowest first, and
skips tests marked ``long`` unless ``VLAC_LONG_TESTS=1``.

At start-up it points this process's DDS at the loopback-only profile, before any test can
create a participant, so no test run multicasts on the LAN. Each test that asks for
``ros_graph`` gets a private domain; on failure the children's logs are printed.
"""

from __future__ import annotations

import os

import pytest
from vlac_ros.dds import apply_loopback_env

from vlac_testing.ros_graph import RosGraph

LONG_TESTS_ENV = 'VLAC_LONG_TESTS'
"""Set to 1 to run the tests marked ``long`` (skipped by default, so CI stays in budget)."""


def pytest_configure(config: pytest.Config) -> None:
    """Restrict this process's DDS to loopback before any test runs; register ``slow``."""
    apply_loopback_env()
    config.addinivalue_line(
        'markers', f'long: minutes on 2 cores; runs only with {LONG_TESTS_ENV}=1 (not in CI)')
    config.addinivalue_line(
        'markers', 'slow(seconds): a module that takes about that long on 2 cores; the '
        'slowest modules run first, so parallel workers (make test: -n 2 --dist loadfile) do '
        'not finish on one of them')


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Order modules by their ``slow`` seconds, slowest first.

    A stable sort: every module's tests stay together and in file order; unmarked modules
    keep the collection order.
    """
    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker('slow')
        return float(marker.args[0]) if marker and marker.args else 0.0

    items[:] = sorted(items, key=lambda item: -seconds(item))
    if os.environ.get(LONG_TESTS_ENV) != '1':
        skip = pytest.mark.skip(reason=f'a long test (minutes on 2 cores): {LONG_TESTS_ENV}=1 '
                                'runs it')
        for item in items:
            if item.get_closest_marker('long'):
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f'vlac_rep_{report.when}', report)


@pytest.fixture
def ros_graph(request: pytest.FixtureRequest, tmp_path) -> RosGraph:
    """Yield a private ROS 2 graph (domain, loopback DDS, children), torn down after the test."""
    graph = RosGraph(tmp_path / 'ros_graph')
    try:
        yield graph
    finally:
        failed = any(getattr(getattr(request.node, f'vlac_rep_{when}', None), 'failed', False)
                     for when in ('setup', 'call'))
        survivors = graph.close()
        if failed:
            print(f'\n===== node logs (ROS_DOMAIN_ID={graph.domain_id}) =====\n{graph.logs()}')
        assert not survivors, f'processes survived teardown: {survivors}'


@pytest.fixture(scope='module')
def torch_one_thread():
    """One torch CPU thread for a test module (restored after).

    On 2-core machines torch's 2-thread BLAS adds ~15 ms of wake-up latency to every tiny
    matmul; one thread runs the tests' tiny models 10-20x faster. Use it with
    ``pytestmark = pytest.mark.usefixtures('torch_one_thread')``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""What FedAlign's log says: fixes named, clients named by the configured client key."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flwr.app import ConfigRecord, Error, Message
from test_strategy import NODES, make_strategy, reply_with

pytestmark = pytest.mark.flower


@pytest.fixture
def flwr_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Flower's logger does not propagate: attach pytest's handler to it directly."""
    logger = logging.getLogger("flwr")
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def test_silent_nodes_warning_names_the_fix(fake_grid, arrays, flwr_log):
    strategy, _, grid = make_strategy(fake_grid, silent=(NODES[0],))
    list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    text = flwr_log.text
    assert f"No answer to the profile query from nodes [{NODES[0]}]" in text
    assert "@app.query()" in text and "profile_reply" in text
    assert "query_profiles=False" in text


def test_logs_name_nodes_by_the_client_key(fake_grid, arrays, flwr_log):
    strategy, _, grid = make_strategy(fake_grid, client_key="partition-id")
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert "experts per partition-id {" in flwr_log.text
    failing = messages[0]
    node = failing.metadata.dst_node_id
    replies = [Message(Error(code=0, reason="boom"), reply_to=failing)]
    replies += [reply_with(m, 0.1, 5) for m in messages[1:]]
    strategy.aggregate_train(1, replies)
    partition = strategy.client_of[node]
    assert f"partition-id {partition!r} (node {node}) dropped out (error: boom)" in flwr_log.text
    assert strategy.describe(node) == f"partition-id {partition!r} (node {node})"


def test_without_a_client_key_logs_name_the_node(fake_grid, arrays):
    strategy, _, grid = make_strategy(fake_grid)
    list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert strategy.describe(NODES[1]) == f"node {NODES[1]}"

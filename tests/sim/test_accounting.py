"""Time and bytes as a server operator sees them, against rounds computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign.sim.accounting import RoundRecord, client_times, round_seconds
from fedalign.sim.selection import admit, client_bytes, pair_bytes

# two experts (1,000 and 3,000 bytes; cost 1 and 3), a 2,000-byte shared part
SIZES = dict(expert_bytes=[1000.0, 3000.0], shared_bytes=2000.0, expert_cost=[1.0, 3.0])


def test_client_times_by_hand():
    times = client_times(
        [[True, False], [True, True], [False, False]],
        **SIZES,
        samples=[100, 50, 80],
        compute=[10.0, 50.0, 10.0],
        bandwidth_down=[1000.0, 500.0, 1000.0],
        bandwidth_up=[250.0, 100.0, 250.0],
        latency=[0.5, 1.0, 0.5],
        slowdown=[2.0, 1.0, 1.0],
        jitter=[1.0, 1.1, 1.0],
    )
    # client 0: one expert. fetch 3,000 B at 1,000 B/s + one latency = 3.5 s; train
    # 100 samples at cost 1 on 10/s, twice as slow as declared = 20 s; return 3,000 B at 250 = 12 s
    # client 1: both. fetch 6,000 B at 500 + 2 latencies = 14 s; train 50 * 4 / 50 = 4 s;
    # return 6,000 B at 100 = 60 s; all of it 10 % slower this round: 85.8 s
    # client 2: given nothing: no time at all
    np.testing.assert_allclose(times.download, [3.5, 14.0, 0.0])
    np.testing.assert_allclose(times.train, [20.0, 4.0, 0.0])
    np.testing.assert_allclose(times.upload, [12.0, 60.0, 0.0])
    np.testing.assert_allclose(times.total, [35.5, 1.1 * 78.0, 0.0])


def test_round_seconds_planning_plus_the_slowest_client_capped_at_the_deadline():
    # a 30 s plan costs 30 s of the round; then the slowest of those sent a payload
    assert round_seconds(30.0, [35.5, 85.8], [True, True], deadline=100.0) == pytest.approx(115.8)
    # someone late (or vanished): the server waits until the deadline
    assert round_seconds(2.0, [35.5, 140.0], [True, False], deadline=100.0) == 102.0
    assert round_seconds(2.0, [35.5, 50.0], [True, False], deadline=100.0) == 102.0
    # nobody sent anything: the round is its planning
    assert round_seconds(0.25, [], [], deadline=100.0) == 0.25


def test_a_hand_computed_round_end_to_end():
    """Planning + transfer + training, and the bytes the budget counts, for one round."""
    x = np.array([[True, False], [False, True]])
    times = client_times(
        x, **SIZES, samples=[20, 20], compute=[10.0, 10.0], bandwidth_down=[1000.0, 1000.0],
        bandwidth_up=[1000.0, 1000.0], latency=[0.0, 0.0],
    )  # fmt: skip
    # client 0: 3,000 B each way (3 s + 3 s) and 2 s of training; client 1: 5 + 5 + 6 s
    np.testing.assert_allclose(times.total, [8.0, 16.0])
    assert round_seconds(1.5, times.total, [True, True], deadline=60.0) == 17.5
    # the budget counts each pair down and up with the shared part: 2 * (1,000 + 2,000)
    # and 2 * (3,000 + 2,000); what is actually sent is within it
    cost = pair_bytes(SIZES["expert_bytes"], SIZES["shared_bytes"])
    np.testing.assert_allclose(cost, [6000.0, 10000.0])
    sent = 2 * (2000 + 1000) + 2 * (2000 + 3000)
    assert sent <= (x @ cost).sum()


def test_admission_walks_the_order_and_skips_what_does_not_fit():
    x = np.array([[True, True], [True, False], [False, False], [False, True], [True, False]])
    need = client_bytes(x, SIZES["expert_bytes"], SIZES["shared_bytes"])
    # down and up, the shared part once: 2 * (2,000 + experts)
    np.testing.assert_allclose(need, [12000.0, 6000.0, 0.0, 10000.0, 6000.0])
    # budget 19,000; order 1, 0, 3, 4, 2
    keep = admit(need, [1, 0, 3, 4, 2], 19_000.0)
    # 1 (6,000) and 0 (12,000) fit; 3 (10,000) no longer does; 4 (6,000) does not either
    # (1,000 left); 2 is planned nothing and is never admitted
    assert keep.tolist() == [True, True, False, False, False]
    keep = admit(need, [3, 4, 0, 1, 2], 19_000.0)
    assert keep.tolist() == [False, False, False, True, True]  # 0 is skipped (3,000 left)
    keep = admit(need, [3, 0, 1, 4, 2], 19_000.0)
    assert keep.tolist() == [False, True, False, True, False]  # 0 skipped, 1 fits, 4 not
    assert need[keep].sum() <= 19_000.0
    assert admit(need, range(5), None).tolist() == [True, True, False, True, True]


def test_round_record_is_json_ready():
    rec = RoundRecord(3, 0.5, 100.5, 10, 5, 1e6, 280, 20, 2, late=1, vanished=1)
    d = rec.to_dict()
    for key in ("round", "planning_seconds", "round_seconds", "bytes_down", "bytes_up",
                "byte_budget", "online", "trained_clients", "dropouts"):  # fmt: skip
        assert key in d
    assert d["round"] == 3 and d["dropouts"] == 2

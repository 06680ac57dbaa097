"""De-duplication that resets when ids or times jump back; one attempt budget shared by a host's processes."""
from __future__ import annotations

import multiprocessing
import os

from pricefeed.exchange.attempt_budget import HostAttemptBudget
from pricefeed.exchange.backoff import AttemptBudgetSpent, ReconnectPolicy
from pricefeed.exchange.dedup import Deduplicator

T = 1_750_000_000_000


def test_overlap_duplicates_are_dropped():
    dedup = Deduplicator()
    assert [dedup.accept("BTC", i, T + i) for i in (1, 2, 3)] == [True, True, True]
    # The other connection of the overlap delivers the same trades (times a few ms apart at most).
    assert [dedup.accept("BTC", i, T + i + 2) for i in (2, 3)] == [False, False]
    assert dedup.accept("BTC", 4, T + 4) and dedup.duplicates == 2 and dedup.resets == 0


def test_a_huge_trade_id_does_not_mute_the_later_trades():
    dedup = Deduplicator()
    assert dedup.accept("BTC", 100, T)
    assert dedup.accept("BTC", 2**62, T + 1)
    assert dedup.accept("BTC", 101, T + 2), "a normal id after a huge one was muted"
    assert dedup.accept("BTC", 102, T + 3) and dedup.resets == 1


def test_ids_restarting_lower_after_an_exchange_failover_reset_the_memory():
    dedup = Deduplicator()
    assert dedup.accept("BTC", 50_000_100, T)
    assert dedup.accept("BTC", 7, T + 1), "ids far behind: a restart, not a duplicate"
    assert dedup.accept("BTC", 8, T + 2)
    # A small step back with a clearly later event time is a restart too.
    assert dedup.accept("ETH", 500, T) and dedup.accept("ETH", 490, T + 5_000)


def test_a_ticker_time_far_ahead_does_not_mute_the_later_tickers():
    dedup = Deduplicator()
    assert dedup.accept("t", T + 23 * 3600_000, T + 23 * 3600_000)
    assert dedup.accept("t", T, T) and dedup.accept("t", T + 1000, T + 1000)
    assert not dedup.accept("t", T + 1000, T + 1000)


def _take_many(args) -> int:
    directory, count = args
    budget = HostAttemptBudget(directory, "stream.example.com:9443", limit=50)
    return sum(1 for _ in range(count) if budget.take() == 0.0)


def test_the_workers_of_a_host_share_one_attempt_budget(tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        taken = pool.map(_take_many, [(str(tmp_path), 30)] * 4)
    assert sum(taken) == 50, taken
    budget = HostAttemptBudget(str(tmp_path), "stream.example.com:9443", limit=50)
    assert 290 < budget.wait() <= 300
    assert budget.status()["attempts_last_5min"] == 50
    assert oct(os.stat(budget.path).st_mode & 0o777) == "0o600"


def test_the_policy_refuses_an_attempt_the_host_has_no_budget_for(tmp_path):
    shared = lambda: HostAttemptBudget(str(tmp_path), "h", limit=2)  # noqa: E731 - one per "worker"
    first, second = (ReconnectPolicy(0.1, 1, 100, host_budget=shared()) for _ in range(2))
    first.take_host_attempt()
    second.take_host_attempt()
    try:
        first.take_host_attempt()
    except AttemptBudgetSpent as spent:
        assert spent.wait > 290
    else:
        raise AssertionError("a third attempt on a budget of two was allowed")
    assert first.delay() > 290 and second.delay() > 290


def test_an_unusable_budget_directory_allows_attempts_and_says_why(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    budget = HostAttemptBudget(str(blocker / "sub"), "h", limit=1)
    assert budget.take() == 0.0 and budget.take() == 0.0
    assert budget.status()["errors"] == 2 and budget.status()["last_error"]

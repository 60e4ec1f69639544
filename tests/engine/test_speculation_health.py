import pytest

from engine.speculation_health import AcceptanceMonitor, HealthPolicy


def _monitor(floor: float = 0.5) -> AcceptanceMonitor:
    return AcceptanceMonitor(HealthPolicy(floor=floor, window_s=60, bucket_s=10, min_drafted=20))


def test_health_when_acceptance_drops_below_floor_then_draft_is_stale() -> None:
    monitor = _monitor()
    monitor.observe(100.0, drafts=10, drafted=40, accepted=8, accepted_per_pos=[5, 2, 1, 0])
    health = monitor.health(101.0)
    assert health.window_acceptance == pytest.approx(0.2)
    assert health.stale
    assert health.window_rate_by_position() == pytest.approx((0.5, 0.2, 0.1, 0.0))


def test_health_when_too_few_tokens_drafted_then_no_verdict() -> None:
    monitor = _monitor()
    monitor.observe(100.0, drafts=2, drafted=8, accepted=0, accepted_per_pos=[0, 0, 0, 0])
    assert not monitor.health(100.0).stale


def test_health_when_floor_is_zero_then_never_stale() -> None:
    monitor = _monitor(floor=0.0)
    monitor.observe(100.0, drafts=10, drafted=40, accepted=0, accepted_per_pos=[0, 0, 0, 0])
    assert not monitor.health(100.0).stale


def test_health_forgets_buckets_older_than_the_window_and_recovers() -> None:
    monitor = _monitor()
    monitor.observe(100.0, drafts=10, drafted=40, accepted=4, accepted_per_pos=[4, 0, 0, 0])
    assert monitor.health(105.0).stale
    monitor.observe(200.0, drafts=10, drafted=40, accepted=36, accepted_per_pos=[10, 10, 9, 7])
    health = monitor.health(201.0)
    assert health.window_drafted == 40
    assert not health.stale
    assert health.history == ((200.0, 0.9),)


def test_history_keeps_one_point_per_bucket_oldest_first() -> None:
    monitor = _monitor()
    for t, accepted in ((100.0, 10), (112.0, 20), (125.0, 30)):
        monitor.observe(t, drafts=10, drafted=40, accepted=accepted, accepted_per_pos=[1])
    assert [round(rate, 2) for _, rate in monitor.health(126.0).history] == [0.25, 0.5, 0.75]

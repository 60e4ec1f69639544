from draft_models.acceptance import AcceptanceReport, simulate


def test_simulate_when_every_token_matches_then_each_step_accepts_k() -> None:
    report = simulate([True] * 11, k=4)
    # token 0 from prefill; steps start at 1 and 6 (4 accepted + 1 bonus each)
    assert report.steps == 2
    assert report.accepted == 8
    assert report.accepted_per_position == (2, 2, 2, 2)
    assert report.rate == 1.0
    assert report.mean_accepted_length == 5.0


def test_simulate_when_a_draft_misses_then_later_positions_are_not_accepted() -> None:
    #          t: 0     1     2      3     4     5
    report = simulate([True, True, False, True, True, True], k=3)
    # step 1 at t=1: accepts t=1, misses t=2 -> next step at t=3: accepts 3,4,5
    assert report.steps == 2
    assert report.drafted == 6
    assert report.accepted == 4
    assert report.accepted_per_position == (2, 1, 1)
    assert report.rate_by_position() == [1.0, 0.5, 0.5]


def test_simulate_when_no_draft_matches_then_one_step_per_token() -> None:
    report = simulate([False] * 5, k=2)
    assert report.steps == 4
    assert report.accepted == 0
    assert report.mean_accepted_length == 1.0


def test_merge_adds_counts_position_by_position() -> None:
    a = AcceptanceReport(2, 1, 2, 1, (1,))
    b = AcceptanceReport(2, 2, 4, 3, (2, 1))
    merged = a.merge(b)
    assert (merged.steps, merged.drafted, merged.accepted) == (3, 6, 4)
    assert merged.accepted_per_position == (3, 1)

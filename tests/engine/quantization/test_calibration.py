from __future__ import annotations

import pytest

from engine.quantization import calibration, events


def test_calibration_chats_are_shipped_and_answered() -> None:
    chats = calibration.calibration_chats(64)
    assert len(chats) == 64
    assert [prompt for prompt, _ in chats] == calibration.prompt_lines()
    assert all(answer for _, answer in chats)


def test_asking_for_more_chats_than_shipped_fails() -> None:
    with pytest.raises(ValueError, match="has 64 chats"):
        calibration.calibration_chats(65)


def test_heldout_text_is_never_used_for_calibration() -> None:
    heldout = calibration.heldout_text()
    assert len(heldout.split()) > 900
    chats = " ".join(p + " " + a for p, a in calibration.calibration_chats(64))
    for sentence in heldout.split(". ")[:20]:
        assert sentence not in chats


def test_digest_depends_on_content_and_order() -> None:
    assert calibration.digest(["a", "b"]) == calibration.digest(["a", "b"])
    assert calibration.digest(["a", "b"]) != calibration.digest(["b", "a"])


def test_progress_lines_round_trip_and_other_lines_are_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    events.emit("calibrating layers", 3, 31)
    line = capsys.readouterr().out
    assert events.parse(line) == events.Progress("calibrating layers", 3, 31)
    assert events.parse("Loading weights: 100%") is None
    assert events.parse('{"event": "result", "record": {"seconds": 1}}') == {"seconds": 1}

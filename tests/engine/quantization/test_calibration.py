from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.quantization import calibration, events

REPO = Path(__file__).resolve().parents[3]


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


def test_digest_when_given_texts_then_sha256_of_each_text_and_a_nul_cut_to_16_hex() -> None:
    # Computed here from the documented format, not by calling digest() again.
    expected = hashlib.sha256(b"a\0b\0").hexdigest()[:16]
    assert calibration.digest(["a", "b"]) == expected
    assert calibration.digest([]) == hashlib.sha256(b"").hexdigest()[:16]
    assert calibration.digest(["é"]) == hashlib.sha256("é\0".encode()).hexdigest()[:16]


def test_digest_when_content_order_or_boundaries_change_then_digest_changes() -> None:
    digests = {
        calibration.digest(texts)
        for texts in (["a", "b"], ["b", "a"], ["a", "c"], ["ab"], ["a", "b", ""], ["a"])
    }
    assert len(digests) == 6


def test_digest_when_recomputed_in_a_fresh_process_then_identical() -> None:
    """What the quantize record stores must not depend on the process (hash seeds)."""
    texts = [p + " " + a for p, a in calibration.calibration_chats(8)]
    script = ("import json, sys\n"
              "from engine.quantization import calibration\n"
              "print(calibration.digest(json.load(sys.stdin)))\n")
    fresh = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(texts), capture_output=True,
        text=True, check=True, cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert fresh == calibration.digest(texts)
    assert fresh != calibration.digest(texts[:-1])


def test_progress_lines_round_trip_and_other_lines_are_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    events.emit("calibrating layers", 3, 31)
    line = capsys.readouterr().out
    assert events.parse(line) == events.Progress("calibrating layers", 3, 31)
    assert events.parse("Loading weights: 100%") is None
    assert events.parse('{"event": "result", "record": {"seconds": 1}}') == {"seconds": 1}

"""tiktoken encodings for upstream models, loaded without network access."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.serving.rendering import ChatPrompt, RenderedMessage
from gateway.upstream.tokens import (
    SHA256,
    TiktokenCounter,
    encoding_name_for,
    install_offline,
    offline_encoding,
)
from tests.conftest import REPO

COUNT_IN_FRESH_PROCESS = (
    "from gateway.upstream.tokens import offline_encoding\n"
    "print(len(offline_encoding('cl100k_base').encode('tiktoken is great!')))\n"
)


def test_encoding_when_no_network_and_empty_cache_then_loaded_from_the_wheel(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", COUNT_IN_FRESH_PROCESS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"  # OpenAI's cookbook count for cl100k_base
    (cached,) = tmp_path.iterdir()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == SHA256["cl100k_base"]


def test_install_when_cached_copy_is_corrupt_then_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    path = install_offline("o200k_base")
    path.write_bytes(b"garbage")
    assert install_offline("o200k_base") == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256["o200k_base"]


def test_encoding_name_when_model_known_unknown_or_configured_then_chosen_in_that_order() -> None:
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("some-local-model") == "o200k_base"
    assert encoding_name_for("gpt-4o", configured="cl100k_base") == "cl100k_base"
    with pytest.raises(ValueError, match="not available offline"):
        encoding_name_for("x", configured="p50k_base")


def test_chat_count_when_one_user_message_then_openai_formula() -> None:
    counter = TiktokenCounter(offline_encoding("o200k_base"))
    assert counter.count("Hello, world!") == 4
    # gpt-4o bills {"role": "user", "content": "Hello"} as 8 prompt tokens: 3 + 1 + 1 + 3.
    prompt = ChatPrompt((RenderedMessage("user", "Hello"),))
    assert len(counter.render_chat(prompt)) == 8

"""Held deferred calls through the unmodified OpenAI and Anthropic Python SDKs with their
default retries (two) and a 3 s timeout, against batches that take 12 s (issue 13 point 3).

Run by `tests/holds.rs` (not by `pytest tests/python`: it needs its own slow batches), which
starts the simulator and a gateway with the default keep-alive (15 s) and passes:

  SLUICE_BASE_URL   the gateway's OpenAI base URL, e.g. http://127.0.0.1:PORT/v1
  SLUICE_ROOT_URL   the gateway's root (the Anthropic SDK adds /v1 itself)
  SLUICE_KEY        a gateway key the loaded policy knows
  SIM_BASE_URL      the simulated provider, e.g. http://127.0.0.1:PORT/v1

Tests run one at a time against one simulator; its batch statistics (cumulative) are
compared before and after each test.
"""

import json
import os
import time
import urllib.parse
import urllib.request
import uuid

import anthropic
import openai
import pytest

BASE_URL = os.environ["SLUICE_BASE_URL"]
ROOT_URL = os.environ["SLUICE_ROOT_URL"]
KEY = os.environ["SLUICE_KEY"]
SIM_BASE_URL = os.environ["SIM_BASE_URL"]

# Batches take 12 s (`tests/holds.rs`): four times this.
SDK_TIMEOUT = 3.0
HELD = {"x-sla": "24h"}


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def sim(method: str, path: str, body=None) -> dict:
    url = urllib.parse.urljoin(SIM_BASE_URL.rstrip("/") + "/", "../" + path)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def lines() -> dict:
    return sim("GET", "sim/batches/stats")["lines_by_custom_id"]


def new_lines(before: dict) -> dict:
    after = lines()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


@pytest.fixture
def faults():
    """Batch faults for one test, reset after it."""
    yield lambda update: sim("POST", "sim/batch-faults", update)
    sim("POST", "sim/batch-faults", {"reset": True})


def test_openai_sdk_gets_the_answer_from_one_batch_line():
    client = openai.OpenAI(base_url=BASE_URL, api_key=KEY, timeout=SDK_TIMEOUT)
    assert client.max_retries == 2, "the SDK's default"
    text = unique("held past the openai timeout")
    before = lines()
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        extra_headers=HELD,
    )
    elapsed = time.monotonic() - started
    completion = raw.parse()
    assert text in completion.choices[0].message.content
    assert elapsed > 3 * SDK_TIMEOUT, f"the batch outlived the SDK's timeout ({elapsed:.1f} s)"
    job = raw.headers["x-sluice-job-id"]
    assert raw.headers["x-sluice-tier"] == "batch"
    assert new_lines(before) == {job: 1}


def test_anthropic_sdk_messages_get_the_answer_from_one_batch_line():
    client = anthropic.Anthropic(base_url=ROOT_URL, api_key=KEY, timeout=SDK_TIMEOUT)
    assert client.max_retries == 2, "the SDK's default"
    text = unique("held past the anthropic timeout")
    before = lines()
    started = time.monotonic()
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": text}],
        extra_headers=HELD,
    )
    elapsed = time.monotonic() - started
    message = raw.parse()
    assert message.type == "message"
    assert text in message.content[0].text
    assert elapsed > 3 * SDK_TIMEOUT, f"the batch outlived the SDK's timeout ({elapsed:.1f} s)"
    job = raw.headers["x-sluice-job-id"]
    assert new_lines(before) == {job: 1}


def test_openai_sdk_sees_a_late_error_with_its_real_status(faults):
    # The batch fails validation at a tenth of 30 s: after the commit at 1.5 s. The committed
    # body is cut, the SDK retries, and the retry attaches to the job and gets the 400.
    faults({"fail_validation": 1, "turnaround_ms": 30000})
    client = openai.OpenAI(base_url=BASE_URL, api_key=KEY, timeout=SDK_TIMEOUT)
    before = lines()
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": unique("refused late")}],
            extra_headers=HELD,
        )
    assert err.value.code == "invalid_batch_line", err.value.body
    assert list(new_lines(before).values()) == [1], "one batch line, no resubmission"

"""The two request kinds deferred to a Batch API since the provider seam landed, through the
official OpenAI Python SDK:

* `client.responses.create(...)` with `x-sla: 24h` → OpenAI's Batch API (`/v1/responses`
  lines): held, `Prefer: respond-async`, `stream=True` and the `responses.stream()` helper,
  idempotent retries;
* `client.chat.completions.create(model="claude-haiku-4-5", ...)` with `x-sla: 24h` →
  Anthropic Message Batches, answered as OpenAI chat completions: held, async, streamed with
  and without `include_usage` (and the `chat.completions.stream()` helper), idempotent retries;
  priced at the batch rate (cost = baseline / 2 without cache tokens).

Started by `tests/sdk_python.rs` with the fast setup described in test_deferred.py (batches
answered in 200 ms, flushed after 200 ms, polled every 50 ms, keep-alives every 50 ms). The
simulator's `/sim/batches/stats` counts batch lines per custom_id (= job id).
"""

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

BASE_URL = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]
OTHER_KEY = os.environ["SLUICE_OTHER_KEY"]
SIM_BASE_URL = os.environ["SIM_BASE_URL"]

# Deferred through the Responses API by these tests only: once a model's batch turnaround is
# observed, its shorter SLAs become batchable, which other files' `semi` requests must not see.
RESPONSES_MODEL = "gpt-4.1"
CLAUDE = "claude-haiku-4-5"
TIMEOUT = 30.0
HELD = {"x-sla": "24h"}
# Bounded polling: at most POLLS × POLL_PAUSE seconds.
POLLS = 600
POLL_PAUSE = 0.05


@pytest.fixture(scope="module")
def oai() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=TIMEOUT)


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def new_key() -> str:
    return f"new-paths-{uuid.uuid4().hex}"


def ask(text: str) -> list:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# ---------- HTTP helpers (urllib, loopback only) ----------


def http(method: str, url: str, body=None, headers=None):
    """(status, headers, body bytes) without raising on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def gateway_get(path: str, key: str = KEY):
    return http("GET", urllib.parse.urljoin(BASE_URL, path), headers={"authorization": f"Bearer {key}"})


def batch_lines(job_id: str) -> int:
    """In how many created batches the simulator saw `job_id` as a line."""
    url = urllib.parse.urljoin(SIM_BASE_URL.rstrip("/") + "/", "../sim/batches/stats")
    status, _, raw = http("GET", url)
    assert status == 200, raw
    return json.loads(raw)["lines_by_custom_id"].get(job_id, 0)


def job_result(location: str):
    """Polls `{location}/result` (bounded) until it is 200: (headers, parsed body)."""
    for _ in range(POLLS):
        status, headers, body = gateway_get(location + "/result")
        if status == 200:
            return headers, json.loads(body)
        assert status == 202, (status, body)
        assert headers.get("retry-after"), dict(headers)
        time.sleep(POLL_PAUSE)
    raise AssertionError(f"{location} was never answered")


def assert_batch(headers) -> str:
    assert headers.get("x-sluice-tier") == "batch", dict(headers)
    job = headers.get("x-sluice-job-id", "")
    assert job.startswith("job_"), dict(headers)
    return job


def assert_half_price(headers):
    cost = float(headers["x-sluice-cost-usd"])
    baseline = float(headers["x-sluice-baseline-usd"])
    assert cost > 0, cost
    # Both headers are rounded to 10 decimals.
    assert abs(baseline - 2 * cost) <= 2e-10, (cost, baseline)


def assert_async_job(raw, model: str) -> tuple:
    """A 202 with the job; returns (job id, Location)."""
    assert raw.http_response.status_code == 202
    job = json.loads(raw.http_response.text)
    assert job["object"] == "sluice.job", job
    assert job["model"] == model, job
    assert raw.headers.get("x-sluice-job-id") == job["id"]
    location = raw.headers.get("location")
    assert location == f"/sluice/v1/jobs/{job['id']}", dict(raw.headers)
    # Only its own client can see it.
    for path in (location, location + "/result"):
        status, _, _ = gateway_get(path, OTHER_KEY)
        assert status == 404, path
    return job["id"], location


def assert_job_completed(location: str):
    status, _, body = gateway_get(location)
    assert status == 200, body
    done = json.loads(body)
    assert (done["status"], done["answered_by"]) == ("completed", "batch"), done


# ---------- POST /v1/responses ----------


def test_responses_held_is_a_response_at_the_batch_rate(oai):
    text = unique("held responses question")
    raw = oai.responses.with_raw_response.create(
        model=RESPONSES_MODEL, instructions="Answer in one line.", input=text, extra_headers=HELD
    )
    assert raw.http_response.status_code == 200
    job = assert_batch(raw.headers)
    assert_half_price(raw.headers)
    response = raw.parse()
    assert isinstance(response, Response)
    assert response.object == "response" and response.status == "completed"
    assert response.model == RESPONSES_MODEL
    assert text in response.output_text, response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    assert batch_lines(job) == 1


def test_responses_respond_async_then_the_job_result_is_the_response(oai):
    text = unique("async responses question")
    raw = oai.responses.with_raw_response.create(
        model=RESPONSES_MODEL, input=text, extra_headers={**HELD, "Prefer": "respond-async"}
    )
    job, location = assert_async_job(raw, RESPONSES_MODEL)
    headers, body = job_result(location)
    assert_batch(headers)
    assert_half_price(headers)
    response = Response.model_validate(body)
    assert response.status == "completed"
    assert text in response.output_text, response.output_text
    assert_job_completed(location)
    assert batch_lines(job) == 1


def test_responses_stream_and_stream_helper_match_the_held_answer(oai):
    text = unique("streamed responses question")
    held = oai.responses.create(model=RESPONSES_MODEL, input=text, extra_headers=HELD)

    raw = oai.responses.with_raw_response.create(model=RESPONSES_MODEL, input=text, stream=True, extra_headers=HELD)
    assert raw.headers.get("content-type", "").startswith("text/event-stream"), dict(raw.headers)
    job = assert_batch(raw.headers)
    events = list(raw.parse())
    types = [e.type for e in events]
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == held.output_text
    completed = events[-1].response
    assert completed.output_text == held.output_text
    assert completed.usage is not None and completed.usage.output_tokens == held.usage.output_tokens
    assert batch_lines(job) == 1

    with oai.responses.stream(model=RESPONSES_MODEL, input=text, extra_headers=HELD) as stream:
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert streamed == held.output_text
    assert final.output_text == held.output_text
    assert final.status == "completed"


def test_responses_stream_wire_has_keep_alives_and_no_done():
    text = unique("raw responses stream")
    status, headers, body = http(
        "POST",
        BASE_URL.rstrip("/") + "/responses",
        {"model": RESPONSES_MODEL, "input": text, "stream": True},
        {"authorization": f"Bearer {KEY}", **HELD},
    )
    assert status == 200, body
    sse = body.decode("utf-8")
    assert sse.startswith(": keep-alive\n\n"), sse[:200]
    assert "[DONE]" not in sse, sse[-200:]
    assert sse.rstrip("\n").split("\n\n")[-1].startswith("event: response.completed\n"), sse[-300:]


def test_responses_idempotent_retries_attach_to_one_job(oai):
    text = unique("idempotent responses question")
    headers = {**HELD, "Idempotency-Key": new_key()}
    first = oai.responses.with_raw_response.create(model=RESPONSES_MODEL, input=text, extra_headers=headers)
    job = assert_batch(first.headers)
    again = oai.responses.with_raw_response.create(model=RESPONSES_MODEL, input=text, extra_headers=headers)
    assert assert_batch(again.headers) == job
    assert again.http_response.content == first.http_response.content
    assert text in again.parse().output_text
    with pytest.raises(openai.UnprocessableEntityError) as e:
        oai.responses.create(model=RESPONSES_MODEL, input=unique("another question"), extra_headers=headers)
    assert e.value.status_code == 422
    assert e.value.code == "idempotency_key_mismatch", e.value.body
    assert batch_lines(job) == 1


# ---------- claude-* on /v1/chat/completions ----------


def assert_claude_completion(raw, text: str) -> ChatCompletion:
    assert raw.http_response.status_code == 200
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-"), completion.id
    assert completion.model == CLAUDE
    assert text in completion.choices[0].message.content, completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    return completion


def test_claude_chat_held_is_a_chat_completion_at_the_batch_rate(oai):
    text = unique("held claude question")
    raw = oai.chat.completions.with_raw_response.create(model=CLAUDE, messages=ask(text), extra_headers=HELD)
    job = assert_batch(raw.headers)
    assert_half_price(raw.headers)
    completion = assert_claude_completion(raw, text)
    usage = completion.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert batch_lines(job) == 1


def test_claude_chat_respond_async_then_the_job_result_is_a_chat_completion(oai):
    text = unique("async claude question")
    raw = oai.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=ask(text), extra_headers={**HELD, "Prefer": "respond-async"}
    )
    job, location = assert_async_job(raw, CLAUDE)
    headers, body = job_result(location)
    assert_batch(headers)
    assert_half_price(headers)
    assert "type" not in body, f"an Anthropic Message, not a chat completion: {body}"
    completion = ChatCompletion.model_validate(body)
    assert completion.object == "chat.completion"
    assert text in completion.choices[0].message.content
    assert_job_completed(location)
    assert batch_lines(job) == 1


def test_claude_chat_streams_match_the_held_answer(oai):
    text = unique("streamed claude question")
    held = oai.chat.completions.create(model=CLAUDE, messages=ask(text), extra_headers=HELD)
    expected = held.choices[0].message.content

    # Without include_usage: no usage chunk, as a synchronous stream.
    raw = oai.chat.completions.with_raw_response.create(model=CLAUDE, messages=ask(text), stream=True, extra_headers=HELD)
    assert raw.headers.get("content-type", "").startswith("text/event-stream"), dict(raw.headers)
    job = assert_batch(raw.headers)
    chunks = list(raw.parse())
    assert all(isinstance(c, ChatCompletionChunk) and c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks), chunks
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert batch_lines(job) == 1

    # With include_usage: the last chunk carries the usage, and no choices.
    stream = oai.chat.completions.create(
        model=CLAUDE, messages=ask(text), stream=True, stream_options={"include_usage": True}, extra_headers=HELD
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [], last
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        held.usage.prompt_tokens,
        held.usage.completion_tokens,
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected

    # The SDK's stream helper accumulates the same completion.
    with oai.chat.completions.stream(model=CLAUDE, messages=ask(text), extra_headers=HELD) as helper:
        final = helper.get_final_completion()
    assert final.choices[0].message.content == expected
    assert final.choices[0].finish_reason == "stop"


def test_claude_chat_stream_wire_has_keep_alives_then_done():
    text = unique("raw claude stream")
    status, _, body = http(
        "POST",
        BASE_URL.rstrip("/") + "/chat/completions",
        {"model": CLAUDE, "messages": ask(text), "stream": True},
        {"authorization": f"Bearer {KEY}", **HELD},
    )
    assert status == 200, body
    sse = body.decode("utf-8")
    assert sse.startswith(": keep-alive\n\n"), sse[:200]
    assert sse.endswith("data: [DONE]\n\n"), sse[-200:]


def test_claude_chat_idempotent_retries_attach_to_one_job(oai):
    text = unique("idempotent claude question")
    headers = {**HELD, "Idempotency-Key": new_key()}
    first = oai.chat.completions.with_raw_response.create(model=CLAUDE, messages=ask(text), extra_headers=headers)
    job = assert_batch(first.headers)
    assert_claude_completion(first, text)
    again = oai.chat.completions.with_raw_response.create(model=CLAUDE, messages=ask(text), extra_headers=headers)
    assert assert_batch(again.headers) == job
    assert again.http_response.content == first.http_response.content
    # An async retry names the same job too.
    accepted = oai.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=ask(text), extra_headers={**headers, "Prefer": "respond-async"}
    )
    assert accepted.http_response.status_code == 202
    assert accepted.headers.get("x-sluice-job-id") == job
    with pytest.raises(openai.UnprocessableEntityError) as e:
        oai.chat.completions.create(model=CLAUDE, messages=ask(unique("another question")), extra_headers=headers)
    assert e.value.code == "idempotency_key_mismatch", e.value.body
    with pytest.raises(openai.UnprocessableEntityError):
        # Same messages, but streamed: another request.
        oai.chat.completions.create(model=CLAUDE, messages=ask(text), stream=True, extra_headers=headers)
    assert batch_lines(job) == 1

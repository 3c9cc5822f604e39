"""The deferred tiers (batch and flex) through the official OpenAI Python SDK.

Started by `tests/sdk_python.rs` with a fast setup: the simulator answers batches in
200 ms, the gateway flushes a group after 200 ms, polls every 50 ms, sends SSE keep-alives
every 50 ms and keeps its jobs in a private SQLite store. Environment:

  SLUICE_BASE_URL   the gateway, e.g. http://127.0.0.1:PORT/v1
  SLUICE_KEY        a gateway key the loaded policy knows
  SLUICE_OTHER_KEY  another client's key
  SIM_BASE_URL      the simulated provider, e.g. http://127.0.0.1:PORT/v1

Tests run one at a time against one simulator, so its batch statistics (cumulative) are
compared before and after each test.
"""

import concurrent.futures
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

BASE_URL = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]
OTHER_KEY = os.environ["SLUICE_OTHER_KEY"]
SIM_BASE_URL = os.environ["SIM_BASE_URL"]

# Not the model of test_openai_sdk.py: once batch turnarounds are observed for a model,
# its shorter SLAs (`semi`) become batchable too.
BATCH_MODEL = "gpt-4.1-mini"
FLEX_MODEL = "gpt-5-mini"
TIMEOUT = 30.0
HELD = {"x-sla": "24h"}
# Bounded polling: at most POLLS × POLL_PAUSE seconds.
POLLS = 600
POLL_PAUSE = 0.05


def client(key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key=key, max_retries=0, timeout=TIMEOUT)


@pytest.fixture
def oai() -> openai.OpenAI:
    return client()


def ask(text: str) -> list:
    return [
        {"role": "system", "content": "You summarise support tickets. " * 40},
        {"role": "user", "content": text},
    ]


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


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


def gateway_url(path: str) -> str:
    """An absolute path (such as a `Location`) on the gateway."""
    return urllib.parse.urljoin(BASE_URL, path)


def gateway_get(path: str, key: str = KEY):
    return http("GET", gateway_url(path), headers={"authorization": f"Bearer {key}"})


def sim_url(path: str) -> str:
    """`path` on the simulator's root (SIM_BASE_URL ends in /v1)."""
    return urllib.parse.urljoin(SIM_BASE_URL.rstrip("/") + "/", "../" + path)


def sim(method: str, path: str, body=None):
    status, _, raw = http(method, sim_url(path), body)
    assert status == 200, (method, path, status, raw)
    return json.loads(raw)


def batch_stats() -> dict:
    return sim("GET", "sim/batches/stats")


def submissions(stats: dict, job_id: str) -> int:
    """In how many created batches `job_id` was a line."""
    return stats["lines_by_custom_id"].get(job_id, 0)


def assert_held_batch_answer(raw, text: str) -> ChatCompletion:
    assert raw.http_response.status_code == 200
    assert raw.headers.get("x-sluice-tier") == "batch", dict(raw.headers)
    assert raw.headers.get("x-sluice-job-id", "").startswith("job_"), dict(raw.headers)
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert text in completion.choices[0].message.content, completion.choices[0].message.content
    return completion


def concurrently(fn, args: list) -> list:
    """`fn(arg)` for every arg at once (released together by a barrier); results or exceptions, in order."""
    barrier = threading.Barrier(len(args))

    def call(arg):
        barrier.wait(timeout=TIMEOUT)
        try:
            return fn(arg)
        except Exception as e:  # returned, so the caller can count the errors
            return e

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(args)) as pool:
        return list(pool.map(call, args))


# ---------- held batch ----------


def test_held_batch_request_is_a_normal_chat_completion(oai):
    text = unique("held parcel question")
    raw = oai.chat.completions.with_raw_response.create(model=BATCH_MODEL, messages=ask(text), extra_headers=HELD)
    completion = assert_held_batch_answer(raw, text)
    assert completion.usage is not None and completion.usage.total_tokens > 0
    cost = float(raw.headers["x-sluice-cost-usd"])
    baseline = float(raw.headers["x-sluice-baseline-usd"])
    assert 0.0 < cost < baseline, (cost, baseline)


def test_concurrent_held_requests_share_batches_and_get_their_own_answers(oai):
    before = batch_stats()
    texts = [unique(f"ticket number {i}") for i in range(10)]

    def one(text):
        return oai.chat.completions.with_raw_response.create(
            model=BATCH_MODEL, messages=ask(text), extra_headers=HELD
        )

    results = concurrently(one, texts)
    jobs = []
    for text, raw in zip(texts, results):
        assert not isinstance(raw, Exception), repr(raw)
        assert_held_batch_answer(raw, text)
        jobs.append(raw.headers["x-sluice-job-id"])
    assert len(set(jobs)) == 10, jobs

    after = batch_stats()
    created = after["created"] - before["created"]
    # Grouped: far fewer batches than callers (a slow machine may split the 200 ms window).
    assert 1 <= created <= 5, f"10 concurrent callers went out in {created} batches"
    for job in jobs:
        assert submissions(after, job) == 1, (job, after)


# ---------- Prefer: respond-async ----------


def test_respond_async_returns_202_then_the_job_result(oai):
    text = unique("answer me later")
    raw = oai.chat.completions.with_raw_response.create(
        model=BATCH_MODEL,
        messages=ask(text),
        extra_headers={**HELD, "Prefer": "respond-async"},
    )
    assert raw.http_response.status_code == 202
    job = json.loads(raw.http_response.text)
    job_id = job["id"]
    assert job["object"] == "sluice.job", job
    assert raw.headers.get("x-sluice-job-id") == job_id
    location = raw.headers.get("location")
    assert location == f"/sluice/v1/jobs/{job_id}", dict(raw.headers)

    # Another client cannot see it, before or after it is answered.
    for path in (location, location + "/result"):
        status, _, body = gateway_get(path, OTHER_KEY)
        assert status == 404, (path, status, body)
        assert "error" in json.loads(body), body

    status, _, body = gateway_get(location)
    assert status == 200, body
    assert json.loads(body)["id"] == job_id

    for _ in range(POLLS):
        status, headers, body = gateway_get(location + "/result")
        if status == 200:
            break
        assert status == 202, (status, body)
        assert headers.get("retry-after"), dict(headers)
        time.sleep(POLL_PAUSE)
    assert status == 200, "the async job was not answered"
    assert headers.get("x-sluice-tier") == "batch", dict(headers)
    completion = ChatCompletion.model_validate(json.loads(body))
    assert completion.object == "chat.completion"
    assert text in completion.choices[0].message.content

    status, _, body = gateway_get(location)
    assert status == 200, body
    done = json.loads(body)
    assert (done["status"], done["answered_by"]) == ("completed", "batch"), done
    for path in (location, location + "/result"):
        status, _, _ = gateway_get(path, OTHER_KEY)
        assert status == 404, path


# ---------- Idempotency-Key ----------


def test_idempotent_retries_attach_to_one_job(oai):
    text = unique("charge order once")
    headers = {**HELD, "Idempotency-Key": unique("order").replace(" ", "-")}

    def one(_=None):
        return oai.chat.completions.with_raw_response.create(
            model=BATCH_MODEL, messages=ask(text), extra_headers=headers
        )

    # A retry after the first call finished gets the stored answer.
    first = one()
    assert_held_batch_answer(first, text)
    again = one()
    assert_held_batch_answer(again, text)
    job = first.headers["x-sluice-job-id"]
    assert again.headers["x-sluice-job-id"] == job
    assert again.http_response.content == first.http_response.content

    # Two concurrent calls with a fresh key share one job too.
    headers["Idempotency-Key"] = unique("order").replace(" ", "-")
    pair = concurrently(one, [0, 1])
    for raw in pair:
        assert not isinstance(raw, Exception), repr(raw)
        assert_held_batch_answer(raw, text)
    concurrent_job = pair[0].headers["x-sluice-job-id"]
    assert pair[1].headers["x-sluice-job-id"] == concurrent_job
    assert concurrent_job != job
    assert pair[0].http_response.content == pair[1].http_response.content

    stats = batch_stats()
    assert submissions(stats, job) == 1, stats
    assert submissions(stats, concurrent_job) == 1, stats


# ---------- stream: true ----------


def test_streaming_deferred_request_yields_chunks(oai):
    text = unique("stream me later")
    raw = oai.chat.completions.with_raw_response.create(
        model=BATCH_MODEL, messages=ask(text), stream=True, extra_headers=HELD
    )
    assert raw.headers.get("content-type", "").startswith("text/event-stream"), dict(raw.headers)
    assert raw.headers.get("x-sluice-tier") == "batch", dict(raw.headers)
    assert raw.headers.get("x-sluice-job-id", "").startswith("job_"), dict(raw.headers)
    chunks = list(raw.parse())
    assert chunks
    assert all(isinstance(c, ChatCompletionChunk) and c.object == "chat.completion.chunk" for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in content, content
    assert all(c.usage is None for c in chunks), "no usage chunk unless asked"
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_streaming_deferred_request_with_usage(oai):
    text = unique("stream me with usage")
    stream = oai.chat.completions.create(
        model=BATCH_MODEL,
        messages=ask(text),
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=HELD,
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in content, content
    last = chunks[-1]
    assert last.choices == [], last
    assert last.usage is not None and last.usage.total_tokens > 0, last
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_deferred_wire_has_keep_alives_the_sdk_skips():
    """The same kind of held stream as above, read raw: SSE comments come before the chunks."""
    text = unique("raw stream")
    status, headers, body = http(
        "POST",
        BASE_URL.rstrip("/") + "/chat/completions",
        {"model": BATCH_MODEL, "messages": ask(text), "stream": True},
        {"authorization": f"Bearer {KEY}", **HELD},
    )
    assert status == 200, body
    sse = body.decode("utf-8")
    assert sse.startswith(": keep-alive\n\n"), sse[:200]
    assert sse.endswith("data: [DONE]\n\n"), sse[-200:]
    assert text in "".join(
        (json.loads(line[len("data: ") :])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in sse.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    )


# ---------- batch faults ----------


@pytest.fixture
def batch_faults():
    """Sets simulator batch faults; resets them after the test."""
    sim("POST", "sim/batch-faults", {"reset": True})

    def set_faults(**faults) -> dict:
        return sim("POST", "sim/batch-faults", faults)

    yield set_faults
    sim("POST", "sim/batch-faults", {"reset": True})


def run_concurrent(oai, label: str, n: int) -> list:
    texts = [unique(f"{label} {i}") for i in range(n)]

    def one(text):
        return oai.chat.completions.with_raw_response.create(
            model=BATCH_MODEL, messages=ask(text), extra_headers=HELD
        )

    return list(zip(texts, concurrently(one, texts)))


def test_create_429_backs_off_and_answers(oai, batch_faults):
    before = batch_stats()
    batch_faults(create_429=2)
    text = unique("rate limited batch")
    raw = oai.chat.completions.with_raw_response.create(model=BATCH_MODEL, messages=ask(text), extra_headers=HELD)
    assert_held_batch_answer(raw, text)
    assert sim("GET", "sim/batch-faults")["create_429"] == 0, "both 429s were answered to the gateway"
    after = batch_stats()
    assert after["created"] - before["created"] == 1
    assert submissions(after, raw.headers["x-sluice-job-id"]) == 1


def test_expired_batch_delivers_partial_output_and_resubmits(oai, batch_faults):
    batch_faults(expire=1, expire_completed_fraction=0.5)
    results = run_concurrent(oai, "expiring batch", 4)
    jobs = []
    for text, raw in results:
        assert not isinstance(raw, Exception), repr(raw)
        assert_held_batch_answer(raw, text)
        jobs.append(raw.headers["x-sluice-job-id"])
    assert sim("GET", "sim/batch-faults")["expire"] == 0, "a batch expired"
    stats = batch_stats()
    counts = [submissions(stats, j) for j in jobs]
    assert all(c in (1, 2) for c in counts), counts
    assert 2 in counts, f"the lines the expired batch did not run were resubmitted: {counts}"


def test_failed_validation_answers_one_bad_request_and_resubmits_the_rest(oai, batch_faults):
    batch_faults(fail_validation=1)
    results = run_concurrent(oai, "failing batch", 3)
    errors = [r for _, r in results if isinstance(r, Exception)]
    assert len(errors) == 1, [repr(r) for _, r in results]
    err = errors[0]
    assert isinstance(err, openai.BadRequestError), repr(err)
    assert err.status_code == 400
    assert isinstance(err.body, dict) and err.body.get("message"), err.body
    for text, raw in results:
        if not isinstance(raw, Exception):
            assert_held_batch_answer(raw, text)
    assert sim("GET", "sim/batch-faults")["fail_validation"] == 0


# ---------- flex ----------


def test_semi_sla_on_a_flex_model_is_answered_by_flex(oai):
    text = unique("flex question")
    raw = oai.chat.completions.with_raw_response.create(
        model=FLEX_MODEL, messages=ask(text), extra_headers={"x-sla": "semi"}
    )
    assert raw.http_response.status_code == 200
    assert raw.headers.get("x-sluice-tier") == "flex", dict(raw.headers)
    completion = raw.parse()
    assert completion.service_tier == "flex"
    assert text in completion.choices[0].message.content
    cost = float(raw.headers["x-sluice-cost-usd"])
    baseline = float(raw.headers["x-sluice-baseline-usd"])
    assert 0.0 < cost < baseline, (cost, baseline)

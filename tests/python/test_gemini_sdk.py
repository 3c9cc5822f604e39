"""The official google-genai Python SDK against Sluice's Gemini-native routes
(`/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`, and the same
below `/v1/`), with the SDK pinned in tests/python/requirements.txt."""

import os

import pytest

from google import genai
from google.genai import errors, types

BASE = os.environ["SLUICE_BASE_URL"].removesuffix("/v1")
KEY = os.environ["SLUICE_KEY"]
MODEL = "gemini-2.5-flash"


def client(version="v1beta", key=KEY, **headers):
    opts = types.HttpOptions(base_url=BASE, api_version=version, headers=headers or None)
    return genai.Client(api_key=key, http_options=opts)


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_generate_content_round_trip(version):
    c = client(version)  # held: a dropped Client closes its connection pool
    r = c.models.generate_content(model=MODEL, contents="Where is my parcel?")
    assert "Where is my parcel?" in r.text
    headers = r.sdk_http_response.headers
    assert headers["x-sluice-tier"] == "interactive"
    u = r.usage_metadata
    assert u.prompt_token_count > 0 and u.candidates_token_count > 0
    # gemini-2.5-flash standard rates: $0.30/M in, $2.50/M out.
    want = u.prompt_token_count * 0.30e-6 + u.candidates_token_count * 2.50e-6
    assert abs(float(headers["x-sluice-cost-usd"]) - want) < 1e-12


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_streaming_matches_the_plain_answer(version):
    c = client(version)
    plain = c.models.generate_content(model=MODEL, contents="stream it")
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="stream it"))
    assert len(chunks) > 1
    assert "".join(ch.text or "" for ch in chunks) == plain.text
    assert chunks[-1].usage_metadata.candidates_token_count == plain.usage_metadata.candidates_token_count


def test_a_caller_flex_request_is_shown_as_flex():
    c = client()
    r = c.models.generate_content(
        model=MODEL, contents="later is fine", config=types.GenerateContentConfig(service_tier="flex")
    )
    assert r.sdk_http_response.headers["x-sluice-tier"] == "flex"
    assert r.sdk_http_response.headers["x-gemini-service-tier"] == "flex"


def test_errors_are_raised_with_google_status():
    for c, code, status in [
        (client(key="sk-not-a-gateway-key"), 401, "UNAUTHENTICATED"),
        (client(**{"x-sla": "whenever"}), 400, "INVALID_ARGUMENT"),
        (client(**{"x-sim-fault": "429"}), 429, "RESOURCE_EXHAUSTED"),
    ]:
        with pytest.raises(errors.APIError) as e:
            c.models.generate_content(model=MODEL, contents="x")
        assert (e.value.code, e.value.status) == (code, status)
    c = client()
    with pytest.raises(errors.APIError) as e:
        c.models.count_tokens(model=MODEL, contents="x")
    assert (e.value.code, e.value.status) == (404, "NOT_FOUND")


def test_a_tolerant_sla_is_held_and_answered_through_batch_mode():
    c = client(**{"x-sla": "24h"})
    r = c.models.generate_content(model=MODEL, contents="whenever")
    assert "whenever" in r.text
    headers = r.sdk_http_response.headers
    assert headers["x-sluice-tier"] == "batch"
    assert float(headers["x-sluice-cost-usd"]) * 2 == pytest.approx(float(headers["x-sluice-baseline-usd"]))
    assert r.usage_metadata.prompt_token_count > 0
    # A held stream: blank keep-alive lines, then the whole answer as one event.
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="whenever, streamed"))
    assert "whenever, streamed" in "".join(ch.text or "" for ch in chunks)
    assert chunks[-1].usage_metadata.prompt_token_count > 0


def test_flex_at_capacity_falls_back_to_standard_in_time():
    # An SLA of minutes, under the batch lead time (5 min): Sluice asks for Flex. Google's
    # flex answers 503 at capacity and has no fallback of its own, so Sluice sends the
    # request at the standard tier.
    flex = client(**{"x-sla": "4m"})  # held: a dropped Client closes its connection pool
    r = flex.models.generate_content(model=MODEL, contents="flex, please")
    assert r.sdk_http_response.headers["x-sluice-tier"] == "flex"
    full = client(**{"x-sla": "4m", "x-sim-fault": "flex-503"})
    r = full.models.generate_content(model=MODEL, contents="flex is full")
    assert "flex is full" in r.text
    headers = r.sdk_http_response.headers
    assert headers["x-sluice-tier"] == "interactive"
    assert headers["x-sluice-cost-usd"] == headers["x-sluice-baseline-usd"]


# --- OpenAI SDK clients using gemini-* models ---

import json  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import openai  # noqa: E402


@pytest.fixture(scope="module")
def oai():
    return openai.OpenAI(base_url=os.environ["SLUICE_BASE_URL"], api_key=KEY, max_retries=0, timeout=30)


def test_openai_sdk_with_a_gemini_model_json_and_stream(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello Gemini"}]
    )
    c = raw.parse()
    assert "Hello Gemini" in c.choices[0].message.content
    assert raw.headers["x-sluice-tier"] == "interactive"
    assert float(raw.headers["x-sluice-cost-usd"]) > 0
    chunks = list(
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello Gemini"}], stream=True
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == c.choices[0].message.content


def test_openai_sdk_gemini_batch_held_async_and_stream(oai):
    held = {"x-sla": "24h"}
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "tag me later"}], extra_headers=held
    )
    c = raw.parse()
    assert c.object == "chat.completion" and "tag me later" in c.choices[0].message.content
    assert raw.headers["x-sluice-tier"] == "batch"
    assert float(raw.headers["x-sluice-cost-usd"]) * 2 == pytest.approx(float(raw.headers["x-sluice-baseline-usd"]))

    chunks = list(
        oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "stream me later"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=held,
        )
    )
    assert "stream me later" in "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0

    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "answer me asynchronously"}],
        extra_headers={**held, "Prefer": "respond-async"},
    )
    assert raw.http_response.status_code == 202
    location = raw.headers["location"]
    base = os.environ["SLUICE_BASE_URL"].removesuffix("/v1")
    for _ in range(400):
        req = urllib.request.Request(base + location + "/result", headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            if resp.status == 200:
                assert resp.headers["x-sluice-tier"] == "batch"
                body = json.loads(resp.read())
                break
        time.sleep(0.025)
    else:
        pytest.fail("the async Gemini job was not answered")
    assert "answer me asynchronously" in body["choices"][0]["message"]["content"]


# --- A model the test policy sends to the `vertex` provider (Vertex AI batch prediction) ---

# tests/sdk_python.rs maps it to `vertex`; gemini-2.5-flash above stays on the Gemini API.
VERTEX_MODEL = "gemini-2.5-pro"
SIM_ROOT = os.environ["SIM_BASE_URL"].removesuffix("/v1")


def sim_requests():
    with urllib.request.urlopen(SIM_ROOT + "/sim/requests", timeout=30) as resp:
        return json.loads(resp.read())


def staged_through_vertex(text):
    """Whether a Cloud Storage upload carried `text` (batch prediction input) and a Vertex
    batchPredictionJob was created, never Gemini Batch Mode for it."""
    requests = sim_requests()
    uploads = [r for r in requests if r["path"].startswith("/upload/storage/") and text in (r.get("body") or "")]
    jobs = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/batchPredictionJobs")]
    batch_mode = [
        r for r in requests if "batchGenerateContent" in r["path"] and text in (r.get("body") or "")
    ]
    return bool(uploads) and bool(jobs) and not batch_mode


def half_priced(headers):
    assert headers["x-sluice-tier"] == "batch"
    assert float(headers["x-sluice-cost-usd"]) * 2 == pytest.approx(float(headers["x-sluice-baseline-usd"]))


def test_a_vertex_routed_model_is_held_and_answered_through_batch_prediction():
    c = client(**{"x-sla": "20h"})  # over the 6 h turnaround prior: batched
    r = c.models.generate_content(model=VERTEX_MODEL, contents="vertex, whenever")
    assert "vertex, whenever" in r.text
    half_priced(r.sdk_http_response.headers)
    assert r.usage_metadata.prompt_token_count > 0
    assert staged_through_vertex("vertex, whenever")


def test_a_vertex_routed_model_interactively_uses_the_vertex_online_endpoint():
    c = client()
    r = c.models.generate_content(model=VERTEX_MODEL, contents="vertex, right now")
    assert "vertex, right now" in r.text
    assert r.sdk_http_response.headers["x-sluice-tier"] == "interactive"
    chunks = list(c.models.generate_content_stream(model=VERTEX_MODEL, contents="vertex, right now"))
    assert "".join(ch.text or "" for ch in chunks) == r.text
    online = [
        q for q in sim_requests() if f"/publishers/google/models/{VERTEX_MODEL}:" in q["path"]
    ]
    assert len(online) >= 2
    assert all(q["headers"].get("authorization", "").startswith("Bearer ") for q in online)
    assert all("x-goog-api-key" not in q["headers"] for q in online)


def test_a_vertex_routed_model_async_job_then_its_answer():
    url = f"{BASE}/v1beta/models/{VERTEX_MODEL}:generateContent"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "vertex, asynchronously"}]}]})
    req = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "x-goog-api-key": KEY,
            "content-type": "application/json",
            "x-sla": "12h",
            "prefer": "respond-async",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 202
        location = resp.headers["location"]
        assert resp.headers["x-sluice-job-id"]
    for _ in range(400):
        req = urllib.request.Request(BASE + location + "/result", headers={"x-goog-api-key": KEY})
        with urllib.request.urlopen(req, timeout=30) as resp:
            if resp.status == 200:
                half_priced(resp.headers)
                answer = types.GenerateContentResponse.model_validate(json.loads(resp.read()))
                break
        time.sleep(0.025)
    else:
        pytest.fail("the async Vertex job was not answered")
    assert "vertex, asynchronously" in answer.text
    assert answer.usage_metadata.prompt_token_count > 0
    assert staged_through_vertex("vertex, asynchronously")


def test_openai_sdk_with_a_vertex_routed_model_held(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=VERTEX_MODEL,
        messages=[{"role": "user", "content": "openai sdk via vertex"}],
        extra_headers={"x-sla": "24h"},
    )
    c = raw.parse()
    assert c.object == "chat.completion" and c.model == VERTEX_MODEL
    assert "openai sdk via vertex" in c.choices[0].message.content
    half_priced(raw.headers)
    assert staged_through_vertex("openai sdk via vertex")

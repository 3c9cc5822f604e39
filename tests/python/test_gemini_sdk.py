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

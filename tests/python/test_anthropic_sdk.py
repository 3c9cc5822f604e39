"""The official Anthropic Python SDK against Sluice's native /v1/messages route."""

import os

import anthropic
import pytest

BASE = os.environ["SLUICE_BASE_URL"].removesuffix("/v1")
KEY = os.environ["SLUICE_KEY"]
MODEL = "claude-haiku-4-5"


@pytest.fixture(scope="module")
def claude():
    return anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)


def test_message_round_trip(claude):
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Where is my parcel?"}]
    )
    assert raw.headers["x-sluice-tier"] == "interactive"
    msg = raw.parse()
    assert msg.type == "message"
    assert "Where is my parcel?" in msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert float(raw.headers["x-sluice-cost-usd"]) > 0


def test_streaming_matches_the_plain_answer(claude):
    plain = claude.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream it"}])
    with claude.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream it"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_tool_use(claude):
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[{"name": "get_weather", "description": "Weather by city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    assert msg.stop_reason == "tool_use"
    block = next(b for b in msg.content if b.type == "tool_use")
    assert block.name == "get_weather"


def test_cache_control_writes_then_reads(claude):
    system = [{"type": "text", "text": "Policy handbook. " * 600, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    first = claude.messages.create(model=MODEL, max_tokens=16, system=system,
                                   messages=[{"role": "user", "content": "one"}])
    second = claude.messages.create(model=MODEL, max_tokens=16, system=system,
                                    messages=[{"role": "user", "content": "two"}])
    assert (first.usage.cache_creation_input_tokens or 0) > 0
    assert (second.usage.cache_read_input_tokens or 0) > 0


def test_errors_are_anthropic_errors():
    bad = anthropic.Anthropic(base_url=BASE, api_key="sk-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    good = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        good.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}],
                             extra_headers={"x-sla": "whenever"})
    with pytest.raises(anthropic.RateLimitError):
        good.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}],
                             extra_headers={"x-sim-fault": "429"})


# --- OpenAI SDK clients using claude-* models (translated to the Messages API) ---

import openai  # noqa: E402


@pytest.fixture(scope="module")
def oai():
    return openai.OpenAI(base_url=os.environ["SLUICE_BASE_URL"], api_key=KEY, max_retries=0, timeout=30)


def test_openai_sdk_with_a_claude_model(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello Claude"}],
        max_tokens=64,
    )
    c = raw.parse()
    assert c.object == "chat.completion"
    assert "Hello Claude" in c.choices[0].message.content
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.prompt_tokens > 0
    assert float(raw.headers["x-sluice-cost-usd"]) > 0


def test_openai_sdk_stream_with_a_claude_model(oai):
    plain = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "stream claude"}])
    chunks = list(oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "stream claude"}],
                                              stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_tools_and_images_with_a_claude_model(oai):
    c = oai.chat.completions.create(
        model=MODEL,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is the weather here?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/street.png"}},
        ]}],
    )
    assert c.choices[0].finish_reason == "tool_calls"
    call = c.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"


def test_untranslatable_fields_are_a_clear_400(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
    assert e.value.body["param"] == "n"


# --- Deferred /v1/messages through Message Batches, with the Anthropic SDK ---

def test_deferred_message_is_the_same_message(claude):
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "summarise later"}],
        extra_headers={"x-sla": "24h"},
    )
    assert raw.headers["x-sluice-tier"] == "batch"
    assert raw.headers["x-sluice-job-id"].startswith("job_")
    msg = raw.parse()
    assert msg.type == "message" and "summarise later" in msg.content[0].text


def test_deferred_message_stream(claude):
    with claude.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream later"}],
                                extra_headers={"x-sla": "24h"}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert "stream later" in text
    assert final.stop_reason == "end_turn"


def test_deferred_message_async_and_idempotent(claude):
    import json
    import urllib.request
    headers = {"x-sla": "24h", "Prefer": "respond-async", "Idempotency-Key": "claims-0042"}
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "async claim"}], extra_headers=headers)
    assert raw.status_code == 202
    job_id = raw.headers["x-sluice-job-id"]
    again = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "async claim"}],
        extra_headers={"x-sla": "24h", "Idempotency-Key": "claims-0042"})
    assert again.headers["x-sluice-job-id"] == job_id
    assert "async claim" in again.parse().content[0].text
    req = urllib.request.Request(f"{BASE}/sluice/v1/jobs/{job_id}/result", headers={"x-api-key": KEY})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.loads(r.read())["type"] == "message"

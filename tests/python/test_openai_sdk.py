"""The official OpenAI Python SDK against a running Sluice gateway.

Started by `tests/sdk_python.rs`, which runs the simulated provider and the gateway
in-process and passes their addresses:

  SLUICE_BASE_URL  the gateway, e.g. http://127.0.0.1:PORT/v1
  SLUICE_KEY       a gateway key the loaded policy knows
  SIM_BASE_URL     the simulated provider, e.g. http://127.0.0.1:PORT/v1
"""

import base64
import json
import os
import struct
import urllib.error
import urllib.parse
import urllib.request

import openai
import pytest

BASE_URL = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]
SIM_BASE_URL = os.environ["SIM_BASE_URL"]

CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
TIMEOUT = 30.0
QUESTION = [{"role": "user", "content": "Where is my parcel? Answer briefly."}]


def client(**kw) -> openai.OpenAI:
    kw.setdefault("api_key", KEY)
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", TIMEOUT)
    return openai.OpenAI(base_url=BASE_URL, **kw)


@pytest.fixture
def oai() -> openai.OpenAI:
    return client()


def sim_url(path: str) -> str:
    """`path` on the simulator's root (SIM_BASE_URL ends in /v1)."""
    return urllib.parse.urljoin(SIM_BASE_URL.rstrip("/") + "/", "../" + path)


def sim_admin(method: str, path: str):
    req = urllib.request.Request(sim_url(path), method=method)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        assert resp.status == 200
        return json.loads(resp.read().decode("utf-8"))


def compact(v) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def raw_member(text: str, name: str) -> str:
    """The exact text of top-level member `name` of the JSON object `text`."""
    decoder = json.JSONDecoder()
    obj, _ = decoder.raw_decode(text)
    assert name in obj
    marker = json.dumps(name) + ":"
    at = text.index(marker)
    start = at + len(marker)
    while text[start] in " \t\r\n":
        start += 1
    _, end = decoder.raw_decode(text, start)
    return text[start:end]


def assert_usd(headers, name: str) -> float:
    value = headers.get(name)
    assert value is not None, f"missing {name}; headers: {dict(headers)}"
    number = float(value)
    assert number >= 0.0, f"{name}: {value}"
    return number


# ---------- chat completions ----------


def test_chat_completion_non_streaming(oai):
    raw = oai.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=QUESTION)
    assert raw.http_response.status_code == 200
    completion = raw.parse()
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices, completion
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert raw.headers.get("x-sluice-tier") == "interactive"
    cost = assert_usd(raw.headers, "x-sluice-cost-usd")
    baseline = assert_usd(raw.headers, "x-sluice-baseline-usd")
    assert baseline > 0.0
    assert cost <= baseline + 1e-12


def test_chat_streaming_without_stream_options_hides_usage(oai):
    expected = oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION)
    sim_admin("DELETE", "sim/requests")
    stream = oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, stream=True)
    chunks = list(stream)
    # The gateway asked the provider for the usage chunk on the client's behalf ...
    upstream = [json.loads(r["body"]) for r in sim_admin("GET", "sim/requests") if r["path"] == "/v1/chat/completions"]
    assert len(upstream) == 1, upstream
    assert upstream[0]["stream"] is True
    assert upstream[0].get("stream_options") == {"include_usage": True}, upstream[0]
    # ... and removed it again: the client sees what it asked for.
    assert chunks, "no chunks"
    for c in chunks:
        assert isinstance(c, openai.types.chat.ChatCompletionChunk)
        assert c.usage is None, f"usage chunk leaked to a client that did not ask: {c}"
        assert c.choices, f"a chunk without choices (the stripped usage chunk?): {c}"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason is not None


def test_chat_streaming_with_include_usage(oai):
    stream = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 2
    last = chunks[-1]
    assert last.usage is not None, last
    assert last.usage.prompt_tokens > 0
    assert last.usage.completion_tokens > 0
    assert last.choices == []
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_streaming_raw_response_headers(oai):
    raw = oai.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=QUESTION, stream=True)
    assert raw.headers.get("x-sluice-tier") == "interactive"
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text


def test_chat_stream_helper_accumulates(oai):
    expected = oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION)
    with oai.chat.completions.stream(model=CHAT_MODEL, messages=QUESTION) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == expected.choices[0].message.content


# ---------- other endpoints ----------


def test_embeddings_default_base64_and_float(oai):
    texts = ["the first document", "the second document"]
    default = oai.embeddings.create(model=EMBED_MODEL, input=texts)
    floats = oai.embeddings.create(model=EMBED_MODEL, input=texts, encoding_format="float")
    assert len(default.data) == len(floats.data) == 2
    assert default.usage.prompt_tokens > 0
    for d, f in zip(default.data, floats.data):
        assert isinstance(d.embedding, list) and d.embedding
        assert isinstance(d.embedding[0], float)
        assert len(d.embedding) == len(f.embedding)
        assert d.embedding == pytest.approx(f.embedding, abs=1e-6)


def test_embeddings_explicit_base64_round_trips(oai):
    raw = oai.embeddings.with_raw_response.create(model=EMBED_MODEL, input="one text", encoding_format="base64")
    assert raw.headers.get("x-sluice-tier") == "interactive"
    assert_usd(raw.headers, "x-sluice-cost-usd")
    body = json.loads(raw.http_response.text)
    packed = base64.b64decode(body["data"][0]["embedding"])
    assert len(packed) % 4 == 0 and packed
    values = struct.unpack(f"<{len(packed) // 4}f", packed)
    floats = oai.embeddings.create(model=EMBED_MODEL, input="one text", encoding_format="float")
    assert list(values) == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_legacy_completions(oai):
    raw = oai.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", max_tokens=16)
    assert raw.headers.get("x-sluice-tier") == "interactive"
    completion = raw.parse()
    assert isinstance(completion, openai.types.Completion)
    assert completion.choices and completion.choices[0].text
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_responses_non_streaming(oai):
    raw = oai.responses.with_raw_response.create(model=CHAT_MODEL, input="Where is my parcel?")
    assert raw.headers.get("x-sluice-tier") == "interactive"
    assert_usd(raw.headers, "x-sluice-cost-usd")
    assert_usd(raw.headers, "x-sluice-baseline-usd")
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0


def test_responses_streaming(oai):
    expected = oai.responses.create(model=CHAT_MODEL, input="Where is my parcel?")
    events = list(oai.responses.create(model=CHAT_MODEL, input="Where is my parcel?", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == expected.output_text
    assert events[-1].response.usage is not None

    with oai.responses.stream(model=CHAT_MODEL, input="Where is my parcel?") as stream:
        final = stream.get_final_response()
    assert final.output_text == expected.output_text


def test_models_list_and_retrieve(oai):
    models = list(oai.models.list())
    assert models
    ids = {m.id for m in models}
    assert CHAT_MODEL in ids, ids
    model = oai.models.retrieve(CHAT_MODEL)
    assert model.id == CHAT_MODEL
    assert model.object == "model"


def test_models_retrieve_unknown_is_404(oai):
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


# ---------- headers and errors ----------


def test_x_sla_semi_accepted(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=QUESTION, extra_headers={"x-sla": "semi"}
    )
    assert raw.http_response.status_code == 200
    assert raw.headers.get("x-sluice-tier")
    assert raw.parse().choices[0].message.content


def test_invalid_x_sla_is_bad_request(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, extra_headers={"x-sla": "whenever"})
    err = info.value
    assert err.status_code == 400
    assert isinstance(err.body, dict), err.body
    assert err.body.get("param") == "x-sla", err.body
    assert err.body.get("code") == "invalid_sla", err.body
    assert "x-sla" in err.body.get("message", ""), err.body


def test_wrong_api_key_is_authentication_error():
    bad = client(api_key="sk-not-a-sluice-key")
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=CHAT_MODEL, messages=QUESTION)
    assert info.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_upstream_429_passed_through(oai):
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, extra_headers={"x-sim-fault": "429"})
    err = info.value
    assert err.status_code == 429
    assert isinstance(err.body, dict), err.body
    assert err.body.get("code") == "rate_limit_exceeded", err.body
    headers = err.response.headers
    assert headers.get("retry-after") == "1", dict(headers)
    assert headers.get("x-request-id", "").startswith("req_sim"), dict(headers)

    # Unchanged: the same bytes the provider answers when asked directly.
    direct = urllib.request.Request(
        SIM_BASE_URL.rstrip("/") + "/chat/completions",
        data=json.dumps({"model": CHAT_MODEL, "messages": QUESTION}).encode(),
        headers={"authorization": "Bearer sk-direct", "content-type": "application/json", "x-sim-fault": "429"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as upstream:
        urllib.request.urlopen(direct, timeout=TIMEOUT)
    assert upstream.value.code == 429
    assert err.response.content == upstream.value.read()


# ---------- what the provider received ----------


def test_prompt_cache_key_and_messages_reach_provider_unchanged():
    sent: list[bytes] = []

    def capture(request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(request.read())

    # The SDK's own HTTP client class (httpx or httpx2, whichever this SDK uses).
    http = openai.DefaultHttpxClient(event_hooks={"request": [capture]}, timeout=TIMEOUT)
    oai = client(http_client=http)
    # Long (> 5,000 characters), with non-ASCII text, quotes and escapes, so any
    # re-encoding on the way would show.
    system = "Du bist der Support-Assistent von Beispiel GmbH — „höflich“, präzise. \"Regeln\":\n" + "".join(
        f"Regel {i}: zitiere den Abschnitt §{i}, erfinde keine Bestellnummern ✓ \\ / \t\n" for i in range(1, 121)
    )
    assert len(system) > 5000
    conversations = [
        [{"role": "system", "content": system}, {"role": "user", "content": f"Kunde {n}: wo ist mein Paket?"}]
        for n in (1, 2)
    ]

    sim_admin("DELETE", "sim/requests")
    for messages in conversations:
        oai.chat.completions.create(model=CHAT_MODEL, messages=messages)
    http.close()
    assert len(sent) == 2
    log = sim_admin("GET", "sim/requests")
    received = [r for r in log if r["method"] == "POST" and r["path"] == "/v1/chat/completions"]
    assert len(received) == 2, [(r["method"], r["path"]) for r in log]

    keys = []
    for messages, client_bytes, upstream in zip(conversations, sent, received):
        body = json.loads(upstream["body"])
        key = body.get("prompt_cache_key")
        assert isinstance(key, str) and key.startswith("sluice-"), body.get("prompt_cache_key")
        keys.append(key)

        client_json = json.loads(client_bytes)
        assert "prompt_cache_key" not in client_json
        # The same messages, as JSON values ...
        assert compact(body["messages"]) == compact(client_json["messages"]) == compact(messages)
        # ... and as bytes: the client's serialisation of `messages` is in the upstream body.
        client_text = client_bytes.decode("utf-8")
        messages_text = raw_member(client_text, "messages")
        assert json.loads(messages_text) == messages
        assert messages_text in upstream["body"]
        # Everything else is untouched as well: only the cache key was added.
        del body["prompt_cache_key"]
        assert body == client_json
    assert keys[0] == keys[1], keys

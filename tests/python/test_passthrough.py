"""Official SDK calls Sluice passes through to the provider (the simulator here):
moderations, images, audio, stored responses, models, and Anthropic's count_tokens."""

import io
import os
import urllib.request

import anthropic
import openai
import pytest

BASE_URL = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def oai() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=TIMEOUT)


def metrics() -> str:
    with urllib.request.urlopen(BASE_URL.removesuffix("/v1") + "/metrics", timeout=TIMEOUT) as r:
        return r.read().decode()


def test_moderations_create(oai):
    raw = oai.moderations.with_raw_response.create(
        model="omni-moderation-latest", input=["I will kill the process", "hello"]
    )
    assert raw.headers["x-sluice-tier"] == "interactive"
    m = raw.parse()
    assert m.model == "omni-moderation-latest"
    assert [r.flagged for r in m.results] == [True, False]
    assert m.results[0].categories.violence is True
    assert m.results[1].category_scores.harassment < 0.01


def test_images_generate(oai):
    img = oai.images.generate(model="gpt-image-1", prompt="a lighthouse at dusk", n=2)
    assert len(img.data) == 2
    assert img.data[0].b64_json
    assert img.usage.output_tokens > 0


def test_audio_transcription_of_a_multipart_upload(oai):
    audio = io.BytesIO(b"RIFF" + b"\0" * 50_000)
    audio.name = "call.wav"
    t = oai.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio)
    assert t.text == "Simulated transcription of call.wav (50004 bytes)."
    text = oai.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"abc"), response_format="text")
    assert "a.wav (3 bytes)" in str(text)


def test_audio_speech_is_binary(oai):
    speech = oai.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hello there")
    data = speech.read()
    assert data.startswith(b"ID3")
    assert len(data) == 3 + len("hello there") * 64
    with oai.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="hi", response_format="wav"
    ) as r:
        assert r.headers["content-type"] == "audio/wav"
        assert b"".join(r.iter_bytes()).startswith(b"RIFF")


def test_responses_retrieve_and_input_items(oai):
    created = oai.responses.create(model="gpt-4o-mini", input="Where is my parcel?")
    got = oai.responses.retrieve(created.id)
    assert got.id == created.id
    assert got.output_text == created.output_text
    items = oai.responses.input_items.list(created.id)
    assert [i.content[0].text for i in items.data] == ["Where is my parcel?"]
    deleted = oai.responses.delete(created.id)
    assert deleted is None
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(created.id)


def test_models_retrieve(oai):
    assert oai.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("ft:gpt-4o:acme::unknown")
    assert e.value.code == "model_not_found"


def test_uploads_are_refused_with_a_clear_message(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.uploads.create(bytes=1, filename="in.jsonl", mime_type="application/jsonl", purpose="batch")
    assert "POST /v1/files" in e.value.message


def test_anthropic_count_tokens():
    claude = anthropic.Anthropic(base_url=BASE_URL.removesuffix("/v1"), api_key=KEY, max_retries=0, timeout=TIMEOUT)
    n = claude.messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    assert n.input_tokens > 0
    msg = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    assert n.input_tokens == msg.usage.input_tokens


def test_pass_through_labels_are_closed(oai):
    oai.moderations.create(input="x")
    text = metrics()
    for raw in ("moderations", "input_items", "count_tokens", "omni-moderation"):
        assert raw not in text, raw

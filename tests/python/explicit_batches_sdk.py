"""The explicit Batch APIs through Sluice with the unmodified OpenAI and Anthropic Python
SDKs (issue 13 point 1): files.create + batches.create + polling + files.content, and
messages.batches.create + retrieve + results, with another client kept out of all of it.

Run by `tests/explicit_batches.rs` in phases around gateway restarts (not by
`pytest tests/python`), with:

  SLUICE_BASE_URL   the gateway's OpenAI base URL, e.g. http://127.0.0.1:PORT/v1
  SLUICE_ROOT_URL   the gateway's root (the Anthropic SDK adds /v1 itself)
  SLUICE_KEY        the key of the client that makes the batches
  SLUICE_OTHER_KEY  another client's key

`create` prints {"openai": batch id, "anthropic": message batch id}; `pickup OPENAI ANTHROPIC`
waits for both to end, downloads their results through Sluice and prints their counts.
"""

import io
import json
import os
import sys
import time

import anthropic
import openai

BASE_URL = os.environ["SLUICE_BASE_URL"]
ROOT_URL = os.environ["SLUICE_ROOT_URL"]
KEY = os.environ["SLUICE_KEY"]
OTHER_KEY = os.environ["SLUICE_OTHER_KEY"]

# The SDKs' defaults: timeout and retries are not set.
oai = openai.OpenAI(base_url=BASE_URL, api_key=KEY)
other = openai.OpenAI(base_url=BASE_URL, api_key=OTHER_KEY)
claude = anthropic.Anthropic(base_url=ROOT_URL, api_key=KEY)
other_claude = anthropic.Anthropic(base_url=ROOT_URL, api_key=OTHER_KEY)


def refused(call, error):
    try:
        call()
    except error:
        return
    raise AssertionError(f"{call} was not refused")


def create():
    lines = [
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"summarise ticket {i}"}]},
            }
        )
        for i in range(3)
    ]
    upload = oai.files.create(file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
    assert upload.purpose == "batch"
    assert upload.id in [f.id for f in oai.files.list()]
    assert upload.id not in [f.id for f in other.files.list()]
    refused(lambda: other.files.retrieve(upload.id), openai.NotFoundError)
    refused(lambda: other.files.content(upload.id), openai.NotFoundError)
    refused(lambda: other.files.delete(upload.id), openai.NotFoundError)
    refused(
        lambda: other.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
        openai.NotFoundError,
    )
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert [b.id for b in oai.batches.list()] == [batch.id]
    assert list(other.batches.list()) == []
    refused(lambda: other.batches.retrieve(batch.id), openai.NotFoundError)
    refused(lambda: other.batches.cancel(batch.id), openai.NotFoundError)

    message_batch = claude.messages.batches.create(
        requests=[
            {
                "custom_id": f"q{i}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 32,
                    "messages": [{"role": "user", "content": f"classify {i}"}],
                },
            }
            for i in range(2)
        ]
    )
    assert [b.id for b in claude.messages.batches.list()] == [message_batch.id]
    assert list(other_claude.messages.batches.list()) == []
    refused(lambda: other_claude.messages.batches.retrieve(message_batch.id), anthropic.NotFoundError)
    refused(lambda: other_claude.messages.batches.cancel(message_batch.id), anthropic.NotFoundError)
    print(json.dumps({"openai": batch.id, "anthropic": message_batch.id}))


def until(read, done):
    for _ in range(2000):
        value = read()
        if done(value):
            return value
        time.sleep(0.02)
    raise AssertionError(f"never ended: {value}")


def pickup(batch_id, message_batch_id):
    batch = until(
        lambda: oai.batches.retrieve(batch_id),
        lambda b: b.status in ("completed", "failed", "expired", "cancelled"),
    )
    assert batch.status == "completed", batch
    content = oai.files.content(batch.output_file_id).text
    answers = [json.loads(line) for line in content.splitlines() if line.strip()]
    assert all(a["response"]["status_code"] == 200 for a in answers), answers
    refused(lambda: other.files.content(batch.output_file_id), openai.NotFoundError)

    message_batch = until(
        lambda: claude.messages.batches.retrieve(message_batch_id),
        lambda b: b.processing_status == "ended",
    )
    results = list(claude.messages.batches.results(message_batch.id))
    assert all(r.result.type == "succeeded" for r in results), results
    refused(lambda: list(other_claude.messages.batches.results(message_batch.id)), anthropic.NotFoundError)
    print(json.dumps({"lines": len(answers), "results": len(results)}))


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create()
    else:
        pickup(sys.argv[2], sys.argv[3])

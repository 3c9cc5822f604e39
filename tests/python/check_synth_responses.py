"""Feeds synthesised Responses API streams (`sluice::synth::response_events`) to the
official OpenAI Python SDK, with no gateway: an in-memory transport answers every request
with the given SSE bytes. Run by the Rust test `synth::tests_responses` (not by pytest:
the name does not match `test_*.py`).

stdin:  {"cases": [{"name": str, "sse": str}, ...]}
stdout: {name: {"frames": [...], "invalid": [...], "raw": [...], "helper": [{"type", "snapshot"}],
                "final": dict | None, "output_text": str | None, "helper_error": str | None}}

`invalid` lists frames the SDK's strict pydantic models reject (every required field of
the event type, with its type); `raw` is what `responses.create(stream=True)` yields;
`helper` and `final` come from the `responses.stream()` accumulator, which checks that the
events are consistent with each other.
"""

import json
import sys
import typing

import httpx2
import openai
import pydantic
from openai.types.responses import ResponseStreamEvent


# Event type -> its model, so a bad frame is reported against its own type only.
MODELS = {
    typing.get_args(m.model_fields["type"].annotation)[0]: m
    for m in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


def frames(sse: str) -> list:
    out = []
    for block in sse.split("\n\n"):
        if not block:
            continue
        event, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        out.append((event, data))
    return out


def run(sse: str) -> dict:
    body = sse.encode()
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=body
        )
    )
    client = openai.OpenAI(
        base_url="http://sluice.invalid/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=httpx2.Client(transport=transport, trust_env=False),
    )
    invalid = []
    names = []
    for event, data in frames(sse):
        names.append(event)
        model = MODELS.get(event)
        if model is None:
            invalid.append(f"{event}: not a Responses stream event")
            continue
        try:
            parsed = model.model_validate_json(data)
            if parsed.type != event:
                invalid.append(f"event {event!r} carries type {parsed.type!r}")
        except pydantic.ValidationError as e:
            invalid += [f"{event}: {'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()]

    raw = [
        {"type": e.type, "sequence_number": e.sequence_number, **(
            {"code": e.code, "message": e.message, "param": e.param} if e.type == "error" else {}
        )}
        for e in client.responses.create(model="gpt-4.1-mini", input="hi", stream=True)
    ]

    helper, final, output_text, helper_error = [], None, None, None
    try:
        with client.responses.stream(model="gpt-4.1-mini", input="hi") as stream:
            for e in stream:
                # `snapshot` (on the delta events) is the text accumulated so far.
                helper.append({"type": e.type, "snapshot": getattr(e, "snapshot", None)})
            response = stream.get_final_response()
            final = response.to_dict()
            output_text = response.output_text
    except RuntimeError as e:
        helper_error = str(e)
    return {
        "frames": names,
        "invalid": invalid,
        "raw": raw,
        "helper": helper,
        "final": final,
        "output_text": output_text,
        "helper_error": helper_error,
    }


def main() -> None:
    cases = json.load(sys.stdin)["cases"]
    json.dump({c["name"]: run(c["sse"]) for c in cases}, sys.stdout)


if __name__ == "__main__":
    main()

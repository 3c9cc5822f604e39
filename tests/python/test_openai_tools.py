"""Tool calls and structured outputs through the gateway with the official OpenAI Python SDK.

The simulated provider calls a tool when `tool_choice` requires one, or under `auto` when
the last user message mentions it (`weather` calls `get_weather`); arguments and
structured content are valid against the given JSON schema. Started by
`tests/sdk_python.rs` like test_openai_sdk.py (SLUICE_BASE_URL, SLUICE_KEY).
"""

import enum
import json
import os
from typing import List, Optional

import openai
import pytest
from pydantic import BaseModel, Field

BASE_URL = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]
MODEL = "gpt-4o-mini"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


class Status(str, enum.Enum):
    OPEN = "open"
    SHIPPED = "shipped"


class Item(BaseModel):
    sku: str
    qty: int = Field(ge=2, le=9)


class Address(BaseModel):
    city: str
    zip: Optional[str]


class Order(BaseModel):
    id: int
    status: Status
    items: List[Item]
    address: Address
    note: Optional[str]
    tags: List[str]


class LookupOrder(BaseModel):
    """Look up an order by its id."""

    order_id: int
    include_items: bool


@pytest.fixture(scope="module")
def oai() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=30.0)


def ask(text: str):
    return [{"role": "user", "content": text}]


def test_required_tool_choice_gets_parsable_tool_calls(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=ask("Hello"), tools=[WEATHER], tool_choice="required"
    )
    assert raw.headers.get("x-sluice-tier") == "interactive"
    c = raw.parse()
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"}
    assert isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")
    assert c.usage.completion_tokens > 0
    assert float(raw.headers["x-sluice-cost-usd"]) > 0


def test_auto_calls_a_mentioned_tool_and_none_answers_text(oai):
    c = oai.chat.completions.create(model=MODEL, messages=ask("What's the weather in Paris?"), tools=[WEATHER])
    assert c.choices[0].message.tool_calls[0].function.name == "get_weather"
    c = oai.chat.completions.create(model=MODEL, messages=ask("Hello"), tools=[WEATHER], tool_choice="auto")
    assert c.choices[0].finish_reason == "stop" and c.choices[0].message.tool_calls is None
    c = oai.chat.completions.create(
        model=MODEL, messages=ask("What's the weather in Paris?"), tools=[WEATHER], tool_choice="none"
    )
    assert c.choices[0].message.content.startswith("Simulated answer to:")


def test_parse_with_a_pydantic_model_returns_an_instance(oai):
    c = oai.chat.completions.parse(model=MODEL, messages=ask("Extract the order."), response_format=Order)
    message = c.choices[0].message
    assert c.choices[0].finish_reason == "stop"
    order = message.parsed
    assert isinstance(order, Order), message
    assert order.status is Status.OPEN
    assert order.items and all(isinstance(i, Item) and 2 <= i.qty <= 9 for i in order.items)
    assert isinstance(order.address, Address)
    assert json.loads(message.content) == order.model_dump(mode="json")


def test_parse_with_pydantic_function_tool_parses_arguments(oai):
    c = oai.chat.completions.parse(
        model=MODEL,
        messages=ask("Where is my parcel?"),
        tools=[openai.pydantic_function_tool(LookupOrder)],
        tool_choice={"type": "function", "function": {"name": "LookupOrder"}},
    )
    call = c.choices[0].message.tool_calls[0]
    assert call.function.name == "LookupOrder"
    assert isinstance(call.function.parsed_arguments, LookupOrder)


def test_stream_helper_reassembles_a_tool_call(oai):
    tools = [openai.pydantic_function_tool(LookupOrder)]
    plain = oai.chat.completions.create(model=MODEL, messages=ask("Look up my order"), tools=tools)
    with oai.chat.completions.stream(
        model=MODEL, messages=ask("Look up my order"), tools=tools, stream_options={"include_usage": True}
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert len(done) == 1 and done[0].name == "LookupOrder"
    assert isinstance(done[0].parsed_arguments, LookupOrder)
    call = final.choices[0].message.tool_calls[0]
    assert call.function.arguments == plain.choices[0].message.tool_calls[0].function.arguments
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.completion_tokens == plain.usage.completion_tokens


def test_raw_stream_chunks_reassemble_arguments(oai):
    stream = oai.chat.completions.create(
        model=MODEL, messages=ask("Hi"), tools=[WEATHER], tool_choice="required", stream=True
    )
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                if tc.function.name:
                    entry["name"] = tc.function.name
                entry["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert set(json.loads(calls[0]["arguments"])) == {"city", "unit"}


def test_json_object_response_format(oai):
    c = oai.chat.completions.create(
        model=MODEL, messages=ask("Answer in JSON."), response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(c.choices[0].message.content), dict)

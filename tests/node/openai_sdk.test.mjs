// The official OpenAI Node SDK against a running Sluice gateway.
//
// Started by `tests/sdk_node.rs`, which runs the simulated provider and the gateway
// in-process and passes their addresses:
//
//   SLUICE_BASE_URL  the gateway, e.g. http://127.0.0.1:PORT/v1
//   SLUICE_KEY       a gateway key the loaded policy knows
//   SIM_BASE_URL     the simulated provider, e.g. http://127.0.0.1:PORT/v1

import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

const BASE_URL = process.env.SLUICE_BASE_URL;
const KEY = process.env.SLUICE_KEY;
const SIM_BASE_URL = process.env.SIM_BASE_URL;
assert.ok(BASE_URL && KEY && SIM_BASE_URL, 'SLUICE_BASE_URL, SLUICE_KEY and SIM_BASE_URL must be set');

const CHAT_MODEL = 'gpt-4o-mini';
const EMBED_MODEL = 'text-embedding-3-small';
const TIMEOUT_MS = 30_000;
const QUESTION = [{ role: 'user', content: 'Where is my parcel? Answer briefly.' }];

function client(options = {}) {
  return new OpenAI({ baseURL: BASE_URL, apiKey: KEY, maxRetries: 0, timeout: TIMEOUT_MS, ...options });
}

const oai = client();

/** `path` on the simulator's root (SIM_BASE_URL ends in /v1). */
function simUrl(path) {
  return new URL(`../${path}`, SIM_BASE_URL.replace(/\/*$/, '/')).href;
}

async function simAdmin(method, path) {
  const resp = await fetch(simUrl(path), { method, signal: AbortSignal.timeout(TIMEOUT_MS) });
  assert.equal(resp.status, 200, `${method} ${path}`);
  return resp.json();
}

/** The value of a `x-sluice-*-usd` header as a number >= 0. */
function usd(headers, name) {
  const value = headers.get(name);
  assert.ok(value !== null, `missing ${name}; headers: ${JSON.stringify([...headers])}`);
  const number = Number(value);
  assert.ok(value.trim() !== '' && Number.isFinite(number) && number >= 0, `${name}: ${value}`);
  return number;
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

const chunkText = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

// ---------- chat completions ----------

test('chat completion, non-streaming, with gateway headers', async () => {
  const { data: completion, response } = await oai.chat.completions
    .create({ model: CHAT_MODEL, messages: QUESTION })
    .withResponse();
  assert.equal(response.status, 200);
  assert.equal(completion.object, 'chat.completion');
  assert.ok(completion.choices.length > 0, JSON.stringify(completion));
  assert.equal(typeof completion.choices[0].message.content, 'string');
  assert.ok(completion.choices[0].message.content.length > 0);
  assert.ok(completion.choices[0].finish_reason);
  assert.ok(completion.usage, JSON.stringify(completion));
  assert.ok(completion.usage.prompt_tokens > 0);
  assert.ok(completion.usage.completion_tokens > 0);
  assert.equal(response.headers.get('x-sluice-tier'), 'interactive');
  const cost = usd(response.headers, 'x-sluice-cost-usd');
  const baseline = usd(response.headers, 'x-sluice-baseline-usd');
  assert.ok(baseline > 0);
  assert.ok(cost <= baseline + 1e-12, `cost ${cost} > baseline ${baseline}`);
});

test('chat streaming without stream_options: same text, no usage chunk', async () => {
  const expected = await oai.chat.completions.create({ model: CHAT_MODEL, messages: QUESTION });
  await simAdmin('DELETE', 'sim/requests');
  const stream = await oai.chat.completions.create({ model: CHAT_MODEL, messages: QUESTION, stream: true });
  const chunks = await collect(stream);

  // The gateway asked the provider for the usage chunk on the client's behalf ...
  const upstream = (await simAdmin('GET', 'sim/requests'))
    .filter((r) => r.path === '/v1/chat/completions')
    .map((r) => JSON.parse(r.body));
  assert.equal(upstream.length, 1, JSON.stringify(upstream));
  assert.equal(upstream[0].stream, true);
  assert.deepEqual(upstream[0].stream_options, { include_usage: true });

  // ... and removed it again: the client sees what it asked for.
  assert.ok(chunks.length > 0, 'no chunks');
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.ok(c.usage == null, `usage chunk leaked to a client that did not ask: ${JSON.stringify(c)}`);
    assert.ok(c.choices.length > 0, `a chunk without choices: ${JSON.stringify(c)}`);
  }
  assert.equal(chunkText(chunks), expected.choices[0].message.content);
  assert.ok(chunks.at(-1).choices[0].finish_reason);
});

test('chat streaming with include_usage: the last chunk has usage', async () => {
  const stream = await oai.chat.completions.create({
    model: CHAT_MODEL,
    messages: QUESTION,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = await collect(stream);
  assert.ok(chunks.length >= 2, JSON.stringify(chunks));
  const last = chunks.at(-1);
  assert.ok(last.usage, JSON.stringify(last));
  assert.ok(last.usage.prompt_tokens > 0);
  assert.ok(last.usage.completion_tokens > 0);
  assert.deepEqual(last.choices, []);
  for (const c of chunks.slice(0, -1)) assert.ok(c.usage == null, JSON.stringify(c));
});

test('chat streaming withResponse: SSE headers from the gateway', async () => {
  const { data: stream, response } = await oai.chat.completions
    .create({ model: CHAT_MODEL, messages: QUESTION, stream: true })
    .withResponse();
  assert.equal(response.headers.get('x-sluice-tier'), 'interactive');
  assert.ok((response.headers.get('content-type') ?? '').startsWith('text/event-stream'));
  assert.ok(chunkText(await collect(stream)).length > 0);
});

test('chat tool call: required tool_choice, plain and streamed', async () => {
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city', 'unit'],
        additionalProperties: false,
      },
      strict: true,
    },
  }];
  const request = { model: CHAT_MODEL, messages: QUESTION, tools, tool_choice: 'required' };
  const plain = await oai.chat.completions.create(request);
  assert.equal(plain.choices[0].finish_reason, 'tool_calls');
  assert.equal(plain.choices[0].message.content, null);
  const call = plain.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(Object.keys(JSON.parse(call.function.arguments)).sort(), ['city', 'unit']);

  const chunks = await collect(await oai.chat.completions.create({ ...request, stream: true }));
  const deltas = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
  assert.equal(deltas[0].function.name, 'get_weather');
  assert.ok(deltas.every((d) => d.index === 0), JSON.stringify(deltas));
  assert.equal(deltas.map((d) => d.function.arguments).join(''), call.function.arguments);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
});

test('chat stream helper accumulates the same completion', async () => {
  const expected = await oai.chat.completions.create({ model: CHAT_MODEL, messages: QUESTION });
  const stream = oai.chat.completions.stream({ model: CHAT_MODEL, messages: QUESTION });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.content, expected.choices[0].message.content);
});

// ---------- other endpoints ----------

test('embeddings: default (base64, decoded by the SDK) equals float', async () => {
  const input = ['the first document', 'the second document'];
  const byDefault = await oai.embeddings.create({ model: EMBED_MODEL, input });
  const floats = await oai.embeddings.create({ model: EMBED_MODEL, input, encoding_format: 'float' });
  assert.equal(byDefault.data.length, 2);
  assert.equal(floats.data.length, 2);
  assert.ok(byDefault.usage.prompt_tokens > 0);
  for (const [i, d] of byDefault.data.entries()) {
    const f = floats.data[i].embedding;
    assert.ok(Array.isArray(d.embedding) && d.embedding.length > 0, JSON.stringify(d).slice(0, 200));
    assert.equal(typeof d.embedding[0], 'number');
    assert.equal(d.embedding.length, f.length);
    for (const [j, x] of d.embedding.entries()) {
      assert.ok(Math.abs(x - f[j]) <= 1e-6, `embedding ${i}[${j}]: ${x} vs ${f[j]}`);
    }
  }
});

test('embeddings withResponse: gateway headers', async () => {
  const { data, response } = await oai.embeddings
    .create({ model: EMBED_MODEL, input: 'one text' })
    .withResponse();
  assert.equal(response.headers.get('x-sluice-tier'), 'interactive');
  usd(response.headers, 'x-sluice-cost-usd');
  assert.equal(data.data.length, 1);
});

test('legacy completions', async () => {
  const { data: completion, response } = await oai.completions
    .create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hello', max_tokens: 16 })
    .withResponse();
  assert.equal(response.headers.get('x-sluice-tier'), 'interactive');
  assert.ok(completion.choices.length > 0 && completion.choices[0].text, JSON.stringify(completion));
  assert.ok(completion.usage && completion.usage.total_tokens > 0);
});

test('responses, non-streaming', async () => {
  const { data: response, response: http } = await oai.responses
    .create({ model: CHAT_MODEL, input: 'Where is my parcel?' })
    .withResponse();
  assert.equal(http.headers.get('x-sluice-tier'), 'interactive');
  usd(http.headers, 'x-sluice-cost-usd');
  usd(http.headers, 'x-sluice-baseline-usd');
  assert.equal(response.status, 'completed');
  assert.ok(response.output_text, JSON.stringify(response));
  assert.ok(response.usage && response.usage.output_tokens > 0);
});

test('responses, streaming', async () => {
  const expected = await oai.responses.create({ model: CHAT_MODEL, input: 'Where is my parcel?' });
  const events = await collect(
    await oai.responses.create({ model: CHAT_MODEL, input: 'Where is my parcel?', stream: true }),
  );
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'response.created', JSON.stringify(types));
  assert.equal(types.at(-1), 'response.completed', JSON.stringify(types));
  const text = events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta)
    .join('');
  assert.equal(text, expected.output_text);
  assert.ok(events.at(-1).response.usage);

  const final = await oai.responses.stream({ model: CHAT_MODEL, input: 'Where is my parcel?' }).finalResponse();
  assert.equal(final.output_text, expected.output_text);
});

test('models: list and retrieve', async () => {
  const models = await collect(oai.models.list());
  assert.ok(models.length > 0);
  const ids = models.map((m) => m.id);
  assert.ok(ids.includes(CHAT_MODEL), JSON.stringify(ids));
  const model = await oai.models.retrieve(CHAT_MODEL);
  assert.equal(model.id, CHAT_MODEL);
  assert.equal(model.object, 'model');
});

test('models: retrieving an unknown model is NotFoundError', async () => {
  await assert.rejects(oai.models.retrieve('no-such-model'), OpenAI.NotFoundError);
});

// ---------- headers and errors ----------

test('x-sla: semi is accepted', async () => {
  const { data, response } = await oai.chat.completions
    .create({ model: CHAT_MODEL, messages: QUESTION }, { headers: { 'x-sla': 'semi' } })
    .withResponse();
  assert.equal(response.status, 200);
  assert.ok(response.headers.get('x-sluice-tier'));
  assert.ok(data.choices[0].message.content);
});

test('invalid x-sla is BadRequestError', async () => {
  await assert.rejects(
    oai.chat.completions.create({ model: CHAT_MODEL, messages: QUESTION }, { headers: { 'x-sla': 'soon' } }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, 'x-sla', JSON.stringify(err.error));
      assert.equal(err.code, 'invalid_sla', JSON.stringify(err.error));
      assert.ok(err.message.includes('x-sla'), err.message);
      return true;
    },
  );
});

test('wrong API key is AuthenticationError', async () => {
  const bad = client({ apiKey: 'sk-not-a-sluice-key' });
  await assert.rejects(bad.chat.completions.create({ model: CHAT_MODEL, messages: QUESTION }), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 401);
    return true;
  });
  await assert.rejects(collect(bad.models.list()), OpenAI.AuthenticationError);
});

test('upstream 429 is RateLimitError, passed through', async () => {
  await assert.rejects(
    oai.chat.completions.create({ model: CHAT_MODEL, messages: QUESTION }, { headers: { 'x-sim-fault': '429' } }),
    (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError, `${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 429);
      assert.equal(err.code, 'rate_limit_exceeded', JSON.stringify(err.error));
      assert.equal(err.headers.get('retry-after'), '1');
      assert.ok((err.headers.get('x-request-id') ?? '').startsWith('req_sim'), JSON.stringify([...err.headers]));
      return true;
    },
  );
});

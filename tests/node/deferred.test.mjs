// The official OpenAI Node SDK on the two deferred paths: the Responses API batched through
// OpenAI's Batch API, and claude-* chat completions batched through Anthropic Message Batches
// (answered in OpenAI format), held, streamed, async and idempotent.
//
// Started by `openai_node_sdk_deferred_paths` in `tests/deferred_paths.rs`, which runs the
// simulated provider (batches answered in 200 ms) and the gateway (flushed after 200 ms, polled
// every 50 ms, keep-alives every 50 ms) in-process and passes their addresses:
//
//   SLUICE_BASE_URL  the gateway, e.g. http://127.0.0.1:PORT/v1
//   SLUICE_KEY       a gateway key the loaded policy knows
//   SIM_BASE_URL     the simulated provider, e.g. http://127.0.0.1:PORT/v1

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';

import OpenAI from 'openai';

const BASE_URL = process.env.SLUICE_BASE_URL;
const KEY = process.env.SLUICE_KEY;
const SIM_BASE_URL = process.env.SIM_BASE_URL;
assert.ok(BASE_URL && KEY && SIM_BASE_URL, 'SLUICE_BASE_URL, SLUICE_KEY and SIM_BASE_URL must be set');

const RESPONSES_MODEL = 'gpt-4.1';
const CLAUDE = 'claude-haiku-4-5';
const TIMEOUT_MS = 30_000;
const HELD = { headers: { 'x-sla': '24h' } };
// Bounded polling: at most POLLS × POLL_MS.
const POLLS = 600;
const POLL_MS = 50;

const oai = new OpenAI({ baseURL: BASE_URL, apiKey: KEY, maxRetries: 0, timeout: TIMEOUT_MS });

const unique = (label) => `${label} ${randomUUID().slice(0, 12)}`;
const ask = (text) => [{ role: 'user', content: text }];

/** `path` on the simulator's root (SIM_BASE_URL ends in /v1). */
function simUrl(path) {
  return new URL(`../${path}`, SIM_BASE_URL.replace(/\/*$/, '/')).href;
}

async function batchLines(jobId) {
  const resp = await fetch(simUrl('sim/batches/stats'), { signal: AbortSignal.timeout(TIMEOUT_MS) });
  assert.equal(resp.status, 200);
  return (await resp.json()).lines_by_custom_id[jobId] ?? 0;
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function assertBatch(headers) {
  assert.equal(headers.get('x-sluice-tier'), 'batch', JSON.stringify([...headers]));
  const job = headers.get('x-sluice-job-id') ?? '';
  assert.ok(job.startsWith('job_'), JSON.stringify([...headers]));
  return job;
}

function assertHalfPrice(headers) {
  const cost = Number(headers.get('x-sluice-cost-usd'));
  const baseline = Number(headers.get('x-sluice-baseline-usd'));
  assert.ok(cost > 0, `cost ${cost}`);
  assert.ok(Math.abs(baseline - 2 * cost) <= 2e-10, `cost ${cost} is not half of baseline ${baseline}`);
}

/** Polls the job result (bounded) until it is 200; returns the parsed body. */
async function jobResult(jobId) {
  const url = new URL(`/sluice/v1/jobs/${jobId}/result`, BASE_URL).href;
  for (let i = 0; i < POLLS; i++) {
    const resp = await fetch(url, { headers: { authorization: `Bearer ${KEY}` }, signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (resp.status === 200) {
      assert.equal(resp.headers.get('x-sluice-tier'), 'batch');
      return resp.json();
    }
    assert.equal(resp.status, 202, await resp.text());
    await resp.arrayBuffer().catch(() => {});
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  assert.fail(`job ${jobId} was never answered`);
}

const chunkText = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

// ---------- POST /v1/responses ----------

test('responses held: the Response object, from the batch tier at half price', async () => {
  const text = unique('node responses held');
  const { data, response } = await oai.responses.create({ model: RESPONSES_MODEL, input: text }, HELD).withResponse();
  const job = assertBatch(response.headers);
  assertHalfPrice(response.headers);
  assert.equal(data.object, 'response');
  assert.equal(data.status, 'completed');
  assert.ok(data.output_text.includes(text), data.output_text);
  assert.ok(data.usage && data.usage.output_tokens > 0);
  assert.equal(await batchLines(job), 1);
});

test('responses stream: events from response.created to response.completed, same text as held', async () => {
  const text = unique('node responses stream');
  const held = await oai.responses.create({ model: RESPONSES_MODEL, input: text }, HELD);
  const { data: stream, response } = await oai.responses
    .create({ model: RESPONSES_MODEL, input: text, stream: true }, HELD)
    .withResponse();
  const job = assertBatch(response.headers);
  assert.ok((response.headers.get('content-type') ?? '').startsWith('text/event-stream'));
  const events = await collect(stream);
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'response.created', JSON.stringify(types));
  assert.equal(types.at(-1), 'response.completed', JSON.stringify(types));
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(deltas, held.output_text);
  const completed = events.at(-1).response;
  const result = await jobResult(job);
  assert.equal(completed.id, result.id);
  assert.deepEqual(completed.output, result.output);

  const final = await oai.responses.stream({ model: RESPONSES_MODEL, input: text }, HELD).finalResponse();
  assert.equal(final.output_text, held.output_text);
});

test('responses respond-async, then an idempotent held retry: one job, one batch line', async () => {
  const text = unique('node responses async');
  const headers = { 'x-sla': '24h', 'Idempotency-Key': randomUUID() };
  const { response } = await oai.responses
    .create({ model: RESPONSES_MODEL, input: text }, { headers: { ...headers, Prefer: 'respond-async' } })
    .withResponse();
  assert.equal(response.status, 202);
  const job = response.headers.get('x-sluice-job-id');
  assert.equal(response.headers.get('location'), `/sluice/v1/jobs/${job}`);
  const { data: retried, response: again } = await oai.responses
    .create({ model: RESPONSES_MODEL, input: text }, { headers })
    .withResponse();
  assert.equal(assertBatch(again.headers), job);
  assert.ok(retried.output_text.includes(text));
  const result = await jobResult(job);
  assert.equal(result.id, retried.id);
  assert.deepEqual(result.output, retried.output);
  await assert.rejects(
    oai.responses.create({ model: RESPONSES_MODEL, input: unique('another') }, { headers }),
    (err) => {
      assert.ok(err instanceof OpenAI.UnprocessableEntityError, `${err?.constructor?.name}: ${err}`);
      assert.equal(err.code, 'idempotency_key_mismatch');
      return true;
    },
  );
  assert.equal(await batchLines(job), 1);
});

// ---------- claude-* on /v1/chat/completions ----------

test('claude chat held: a chat.completion from a Message Batch at half price', async () => {
  const text = unique('node claude held');
  const { data, response } = await oai.chat.completions
    .create({ model: CLAUDE, messages: ask(text) }, HELD)
    .withResponse();
  const job = assertBatch(response.headers);
  assertHalfPrice(response.headers);
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.model, CLAUDE);
  assert.ok(data.choices[0].message.content.includes(text), data.choices[0].message.content);
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.ok(data.usage.total_tokens > 0);
  assert.equal(await batchLines(job), 1);
});

test('claude chat stream, with and without include_usage, and the stream helper', async () => {
  const text = unique('node claude stream');
  const held = await oai.chat.completions.create({ model: CLAUDE, messages: ask(text) }, HELD);
  const expected = held.choices[0].message.content;

  const { data: stream, response } = await oai.chat.completions
    .create({ model: CLAUDE, messages: ask(text), stream: true }, HELD)
    .withResponse();
  assertBatch(response.headers);
  const chunks = await collect(stream);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.usage == null), JSON.stringify(chunks));
  assert.equal(chunkText(chunks), expected);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');

  const withUsage = await collect(
    await oai.chat.completions.create(
      { model: CLAUDE, messages: ask(text), stream: true, stream_options: { include_usage: true } },
      HELD,
    ),
  );
  const last = withUsage.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, held.usage);
  assert.equal(chunkText(withUsage), expected);

  const final = await oai.chat.completions.stream({ model: CLAUDE, messages: ask(text) }, HELD).finalChatCompletion();
  assert.equal(final.choices[0].message.content, expected);
});

test('claude chat idempotent retries: one job, one batch line, 422 for another body', async () => {
  const text = unique('node claude idempotent');
  const opts = { headers: { 'x-sla': '24h', 'Idempotency-Key': randomUUID() } };
  const [a, b] = await Promise.all([
    oai.chat.completions.create({ model: CLAUDE, messages: ask(text) }, opts).withResponse(),
    oai.chat.completions.create({ model: CLAUDE, messages: ask(text) }, opts).withResponse(),
  ]);
  const job = assertBatch(a.response.headers);
  assert.equal(assertBatch(b.response.headers), job);
  assert.deepEqual(a.data, b.data);
  await assert.rejects(
    oai.chat.completions.create({ model: CLAUDE, messages: ask(unique('another')) }, opts),
    OpenAI.UnprocessableEntityError,
  );
  assert.equal(await batchLines(job), 1);
});

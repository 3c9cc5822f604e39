// A held deferred call through the unmodified OpenAI Node SDK with its default retries (two)
// and a 3 s timeout, against batches that take 12 s (issue 13 point 3).
//
// Run by `tests/holds.rs` (not with the other Node tests: it needs its own slow batches),
// which starts the simulator and a gateway with the default keep-alive (15 s) and passes:
//
//   SLUICE_BASE_URL  the gateway's OpenAI base URL, e.g. http://127.0.0.1:PORT/v1
//   SLUICE_ROOT_URL  the gateway's root
//   SLUICE_KEY       a gateway key the loaded policy knows
//   SIM_BASE_URL     the simulated provider, e.g. http://127.0.0.1:PORT/v1

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';

import OpenAI from 'openai';

const BASE_URL = process.env.SLUICE_BASE_URL;
const ROOT_URL = process.env.SLUICE_ROOT_URL;
const KEY = process.env.SLUICE_KEY;
const SIM_BASE_URL = process.env.SIM_BASE_URL;
assert.ok(BASE_URL && ROOT_URL && KEY && SIM_BASE_URL, 'SLUICE_BASE_URL, SLUICE_ROOT_URL, SLUICE_KEY and SIM_BASE_URL must be set');

// Batches take 12 s (`tests/holds.rs`): four times this.
const SDK_TIMEOUT_MS = 3_000;
const HELD = { headers: { 'x-sla': '24h' } };

const unique = (label) => `${label} ${randomUUID().slice(0, 12)}`;

async function sim(method, path, body) {
  const url = new URL(`../${path}`, SIM_BASE_URL.replace(/\/*$/, '/')).href;
  const resp = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  assert.equal(resp.status, 200);
  return resp.json();
}

const lines = async () => (await sim('GET', 'sim/batches/stats')).lines_by_custom_id;

/** Lines counted since `before`, per custom_id (= job id). */
function added(before, after) {
  return Object.fromEntries(
    Object.entries(after)
      .filter(([id, n]) => n !== (before[id] ?? 0))
      .map(([id, n]) => [id, n - (before[id] ?? 0)]),
  );
}

const chat = (text) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });

test('the Node SDK gets the answer from one batch line, long after its timeout', async () => {
  const client = new OpenAI({ baseURL: BASE_URL, apiKey: KEY, timeout: SDK_TIMEOUT_MS });
  assert.equal(client.maxRetries, 2, "the SDK's default");
  const text = unique('held past the node timeout');
  const before = await lines();
  const started = Date.now();
  const { data, response } = await client.chat.completions.create(chat(text), HELD).withResponse();
  const elapsed = Date.now() - started;
  assert.ok(data.choices[0].message.content.includes(text), data.choices[0].message.content);
  assert.ok(elapsed > 3 * SDK_TIMEOUT_MS, `the batch outlived the SDK's timeout (${elapsed} ms)`);
  assert.equal(response.headers.get('x-sluice-tier'), 'batch');
  const job = response.headers.get('x-sluice-job-id');
  assert.deepEqual(added(before, await lines()), { [job]: 1 });
});

test('a late error reaches the Node SDK as a broken body; the job keeps the real answer', async () => {
  // The batch fails validation at a tenth of 30 s, after the commit at 1 s.
  await sim('POST', 'sim/batch-faults', { fail_validation: 1, turnaround_ms: 30_000 });
  try {
    const client = new OpenAI({ baseURL: BASE_URL, apiKey: KEY, timeout: SDK_TIMEOUT_MS });
    const before = await lines();
    // The status was 200, so the SDK reads the body, which is cut: never parsed as an answer.
    await assert.rejects(client.chat.completions.create(chat(unique('refused late')), HELD), (e) => {
      assert.ok(!(e instanceof OpenAI.APIError && e.status === 200), String(e));
      return true;
    });
    const add = added(before, await lines());
    assert.deepEqual(Object.values(add), [1], JSON.stringify(add));
    const [job] = Object.keys(add);
    const resp = await fetch(new URL(`sluice/v1/jobs/${job}/result`, ROOT_URL.replace(/\/*$/, '/')), {
      headers: { authorization: `Bearer ${KEY}` },
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(resp.status, 400);
    assert.equal((await resp.json()).error.code, 'invalid_batch_line');
  } finally {
    await sim('POST', 'sim/batch-faults', { reset: true });
  }
});

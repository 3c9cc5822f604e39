// Official OpenAI Node SDK calls Sluice passes through to the provider (the simulator
// here): moderations, images, an audio transcription upload, stored responses.
//
// Started by `tests/sdk_node.rs` with SLUICE_BASE_URL and SLUICE_KEY set.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI, { toFile } from 'openai';

const BASE_URL = process.env.SLUICE_BASE_URL;
const KEY = process.env.SLUICE_KEY;
assert.ok(BASE_URL && KEY, 'SLUICE_BASE_URL and SLUICE_KEY must be set');

const oai = new OpenAI({ baseURL: BASE_URL, apiKey: KEY, maxRetries: 0, timeout: 30_000 });

test('moderations.create passes through', async () => {
  const { data, response } = await oai.moderations
    .create({ model: 'omni-moderation-latest', input: 'I will kill the process' })
    .withResponse();
  assert.equal(response.headers.get('x-sluice-tier'), 'interactive');
  assert.equal(data.results.length, 1);
  assert.equal(data.results[0].flagged, true);
  assert.equal(data.results[0].categories.violence, true);
});

test('images.generate passes through', async () => {
  const img = await oai.images.generate({ model: 'gpt-image-1', prompt: 'a lighthouse' });
  assert.equal(img.data.length, 1);
  assert.ok(img.data[0].b64_json);
});

test('audio.transcriptions.create streams a multipart upload through', async () => {
  const file = await toFile(Buffer.alloc(30_000, 1), 'note.wav');
  const t = await oai.audio.transcriptions.create({ model: 'whisper-1', file });
  assert.equal(t.text, 'Simulated transcription of note.wav (30000 bytes).');
});

test('responses.retrieve returns what responses.create made', async () => {
  const created = await oai.responses.create({ model: 'gpt-4o-mini', input: 'Where is my parcel?' });
  const got = await oai.responses.retrieve(created.id);
  assert.equal(got.id, created.id);
  assert.equal(got.output_text, created.output_text);
});

test('uploads are refused with a clear message', async () => {
  await assert.rejects(
    oai.uploads.create({ bytes: 1, filename: 'in.jsonl', mime_type: 'application/jsonl', purpose: 'batch' }),
    (e) => e.status === 404 && /POST \/v1\/files/.test(e.message),
  );
});

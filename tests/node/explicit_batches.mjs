// The explicit Batch API through Sluice with the unmodified OpenAI Node SDK (issue 13
// point 1): files.create + batches.create + polling + files.content, another client kept
// out. Run by tests/explicit_batches.rs in phases around gateway restarts, with
// SLUICE_BASE_URL, SLUICE_KEY and SLUICE_OTHER_KEY. `create` prints {"openai": batch id};
// `pickup ID` waits for it to end, downloads its output through Sluice and prints the count.
import assert from 'node:assert/strict';
import OpenAI, { NotFoundError, toFile } from 'openai';

// The SDK's defaults: timeout and retries are not set.
const oai = new OpenAI({ baseURL: process.env.SLUICE_BASE_URL, apiKey: process.env.SLUICE_KEY });
const other = new OpenAI({ baseURL: process.env.SLUICE_BASE_URL, apiKey: process.env.SLUICE_OTHER_KEY });

async function refused(call) {
  await assert.rejects(call, (e) => e instanceof NotFoundError);
}

async function ids(page) {
  const out = [];
  for await (const item of page) out.push(item.id);
  return out;
}

async function create() {
  const lines = [0, 1, 2].map((i) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `summarise ticket ${i}` }] },
    }),
  );
  const upload = await oai.files.create({
    file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'),
    purpose: 'batch',
  });
  assert.ok((await ids(oai.files.list())).includes(upload.id));
  assert.ok(!(await ids(other.files.list())).includes(upload.id));
  await refused(() => other.files.retrieve(upload.id));
  await refused(() => other.files.content(upload.id));
  const params = { input_file_id: upload.id, endpoint: '/v1/chat/completions', completion_window: '24h' };
  await refused(() => other.batches.create(params));
  const batch = await oai.batches.create(params);
  assert.deepEqual(await ids(oai.batches.list()), [batch.id]);
  assert.deepEqual(await ids(other.batches.list()), []);
  await refused(() => other.batches.retrieve(batch.id));
  console.log(JSON.stringify({ openai: batch.id }));
}

async function pickup(id) {
  let batch;
  for (let i = 0; i < 2000; i++) {
    batch = await oai.batches.retrieve(id);
    if (['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(batch.status, 'completed');
  const text = await (await oai.files.content(batch.output_file_id)).text();
  const answers = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  assert.ok(answers.every((a) => a.response.status_code === 200));
  await refused(() => other.files.content(batch.output_file_id));
  console.log(JSON.stringify({ lines: answers.length }));
}

if (process.argv[2] === 'create') await create();
else await pickup(process.argv[3]);

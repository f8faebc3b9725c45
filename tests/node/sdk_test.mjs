// sdk_test.mjs - drives `dsv4 serve` with the official OpenAI (v6) and
// Anthropic SDKs.  Run by tests/t_server.sh with DSV4_URL and DSV4_MODEL.
// The model has random weights: the checks are about protocol shape, the
// grammar-enforced outputs (tool calls, JSON schema) and errors.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const url = process.env.DSV4_URL;
const model = process.env.DSV4_MODEL;
const nSchema = Number(process.env.N_SCHEMA || 50);
const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
const anthropic = new Anthropic({ baseURL: url, apiKey: 'unused', maxRetries: 0 });

let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++; else { failed++; console.log(`FAIL ${what}`); }
}
async function test(name, fn) {
  try { await fn(); } catch (e) { failed++; console.log(`FAIL ${name}: ${e.stack || e}`); }
}

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city'], additionalProperties: false,
    },
    strict: true,
  },
}];

// The subset of JSON Schema the test schema uses, checked independently of the server.
function validate(schema, v) {
  if (schema.enum) return schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v));
  switch (schema.type) {
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
      for (const r of schema.required || []) if (!(r in v)) return false;
      for (const [k, x] of Object.entries(v)) {
        const s = schema.properties?.[k];
        if (!s) { if (schema.additionalProperties === false) return false; continue; }
        if (!validate(s, x)) return false;
      }
      return true;
    }
    case 'array':
      return Array.isArray(v) && (schema.maxItems === undefined || v.length <= schema.maxItems) &&
        (schema.minItems === undefined || v.length >= schema.minItems) && v.every((x) => validate(schema.items, x));
    case 'string': return typeof v === 'string' && (schema.maxLength === undefined || [...v].length <= schema.maxLength);
    case 'integer': return Number.isInteger(v) && (schema.minimum === undefined || v >= schema.minimum);
    case 'number': return typeof v === 'number';
    case 'boolean': return typeof v === 'boolean';
    case 'null': return v === null;
    default: return true;
  }
}

await test('openai chat', async () => {
  const r = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 6 });
  check(typeof r.choices[0].message.content === 'string', 'chat content');
  check(r.choices[0].finish_reason === 'length', 'chat finish_reason length');
  check(r.usage.completion_tokens === 6, 'chat usage');
});

await test('openai stream', async () => {
  const stream = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 6, stream: true, stream_options: { include_usage: true },
  });
  let role = null, text = '', finish = null, usage = null, n = 0;
  for await (const c of stream) {
    n++;
    if (c.choices.length) {
      role = role || c.choices[0].delta.role;
      text += c.choices[0].delta.content || '';
      finish = c.choices[0].finish_reason || finish;
    }
    if (c.usage) usage = c.usage;
  }
  check(role === 'assistant' && n > 2, 'stream role delta');
  check(finish === 'length' && usage?.completion_tokens === 6, 'stream finish + usage');
});

await test('openai thinking', async () => {
  const r = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Think first.' }], max_tokens: 8, reasoning_effort: 'high',
  });
  check(typeof r.choices[0].message.reasoning_content === 'string' && r.choices[0].message.reasoning_content.length > 0,
    'reasoning_content');
});

await test('openai tool round trip', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r = await openai.chat.completions.create({
    model, messages, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 60,
  });
  const m = r.choices[0].message;
  check(r.choices[0].finish_reason === 'tool_calls', 'tool finish_reason');
  const call = m.tool_calls?.[0];
  check(call?.function.name === 'get_weather', 'tool name');
  const args = JSON.parse(call.function.arguments);
  check(validate(tools[0].function.parameters, args), `tool arguments valid: ${call.function.arguments}`);
  messages.push(m, { role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temp_c: 21, sky: 'clear' }) });
  const r2 = await openai.chat.completions.create({ model, messages, tools, max_tokens: 6 });
  check(typeof r2.choices[0].message.content === 'string' && r2.usage.prompt_tokens > r.usage.prompt_tokens,
    'answer after the tool result');
});

await test('openai streamed tool call', async () => {
  const stream = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather?' }], tools, tool_choice: 'required', max_tokens: 60, stream: true,
  });
  let args = '', name = null, finish = null;
  for await (const c of stream) {
    const d = c.choices[0]?.delta;
    for (const tc of d?.tool_calls || []) { name = tc.function?.name || name; args += tc.function?.arguments || ''; }
    finish = c.choices[0]?.finish_reason || finish;
  }
  check(name === 'get_weather' && finish === 'tool_calls', 'streamed tool call name/finish');
  check(validate(tools[0].function.parameters, JSON.parse(args)), `streamed arguments valid: ${args}`);
});

await test('openai json_schema x N', async () => {
  const schema = {
    type: 'object',
    properties: {
      title: { type: 'string', maxLength: 12 }, year: { type: 'integer', minimum: 0 },
      genre: { enum: ['drama', 'comedy', 'horror'] }, cast: { type: 'array', items: { type: 'string' }, maxItems: 2 },
      seen: { type: 'boolean' },
    },
    required: ['title', 'year', 'genre'], additionalProperties: false,
  };
  let good = 0;
  const one = async (i) => {
    const r = await openai.chat.completions.create({
      model, messages: [{ role: 'user', content: `A movie, please (${i})` }], max_tokens: 24, seed: 1000 + i,
      response_format: { type: 'json_schema', json_schema: { name: 'movie', schema, strict: true } },
    });
    const text = r.choices[0].message.content;
    let ok = false;
    try { ok = validate(schema, JSON.parse(text)); } catch { ok = false; }
    if (ok) good++; else console.log(`invalid json_schema output ${i}: ${text}`);
  };
  for (let i = 0; i < nSchema; i += 8) await Promise.all([...Array(Math.min(8, nSchema - i)).keys()].map((k) => one(i + k)));
  check(good === nSchema, `json_schema valid ${good}/${nSchema}`);
});

await test('openai errors', async () => {
  let st = 0;
  try { await openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }); } catch (e) { st = e.status; }
  check(st === 404, `unknown model -> 404 (${st})`);
  st = 0;
  try { await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 7 }); } catch (e) { st = e.status; }
  check(st === 400, `bad temperature -> 400 (${st})`);
});

await test('anthropic message', async () => {
  const r = await anthropic.messages.create({ model, max_tokens: 6, system: 'Be brief.', messages: [{ role: 'user', content: 'Hi' }] });
  check(r.type === 'message' && r.content[0].type === 'text' && r.stop_reason === 'max_tokens' && r.usage.output_tokens === 6,
    'anthropic message');
});

await test('anthropic stream with thinking', async () => {
  const stream = anthropic.messages.stream({
    model, max_tokens: 8, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'Hi' }],
  });
  const events = [];
  stream.on('streamEvent', (e) => events.push(e.type));
  const final = await stream.finalMessage();
  check(events[0] === 'message_start' && events[events.length - 1] === 'message_stop', 'anthropic event order');
  check(final.content[0].type === 'thinking' && final.content[0].thinking.length > 0, 'anthropic thinking block');
});

await test('anthropic tool use round trip', async () => {
  const atools = [{ name: 'get_weather', description: 'Weather', input_schema: tools[0].function.parameters }];
  const messages = [{ role: 'user', content: 'Weather in Rome?' }];
  const stream = anthropic.messages.stream({ model, max_tokens: 60, tools: atools, tool_choice: { type: 'tool', name: 'get_weather' }, messages });
  const r = await stream.finalMessage();
  const use = r.content.find((b) => b.type === 'tool_use');
  check(r.stop_reason === 'tool_use' && use?.name === 'get_weather', 'anthropic tool_use');
  check(use && validate(atools[0].input_schema, use.input), `anthropic tool input valid: ${JSON.stringify(use?.input)}`);
  messages.push({ role: 'assistant', content: r.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 C, clear' }] });
  const r2 = await anthropic.messages.create({ model, max_tokens: 6, tools: atools, messages });
  check(r2.type === 'message' && r2.usage.input_tokens > r.usage.input_tokens, 'anthropic answer after tool_result');
});

await test('anthropic error', async () => {
  let st = 0;
  try { await anthropic.messages.create({ model: 'nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }); } catch (e) { st = e.status; }
  check(st === 404, `anthropic unknown model -> 404 (${st})`);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

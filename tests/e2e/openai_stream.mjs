// Drives `jevons serve` with the official openai npm client: a streaming chat
// completion whose reasoning arrives in reasoning_content deltas (DeepSeek's field),
// with usage (and jevons' energy) on the final chunk; then a non-streaming one.
import OpenAI from "openai";
import assert from "node:assert/strict";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, timeout: 60_000, maxRetries: 0 });

const models = await client.models.list();
const model = models.data[0].id;
console.log("model:", model);

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "What is 2 + 2?" }],
  stream: true,
  stream_options: { include_usage: true },
  temperature: 0,
  max_tokens: 32,
  max_reasoning_tokens: 8,
});
let reasoning = "", content = "", usage = null, finish = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.reasoning_content) reasoning += c.delta.reasoning_content;
    if (c.delta.content) content += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
console.log(JSON.stringify({ chunks, reasoning, content, finish, usage }, null, 1));
assert.ok(chunks > 3, "several chunks streamed");
assert.ok(reasoning.length > 0, "reasoning_content streamed");
assert.ok(!content.includes("think>"), "no think tags in content");
assert.ok(usage, "usage on the final chunk");
assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
assert.ok(usage.completion_tokens_details.reasoning_tokens > 0);
assert.ok(usage.completion_tokens_details.reasoning_tokens <= usage.completion_tokens);
assert.ok(usage.energy.joules > 0, "energy reported");
assert.ok(["measured", "estimated"].includes(usage.energy.source));
assert.ok(["stop", "length"].includes(finish));

const whole = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "What is 2 + 2?" }],
  temperature: 0,
  max_tokens: 32,
  max_reasoning_tokens: 8,
});
assert.equal(whole.choices[0].message.reasoning_content, reasoning);
assert.equal(whole.choices[0].message.content, content);
assert.equal(whole.usage.completion_tokens, usage.completion_tokens);

// Errors come back as the client's typed errors.
// Structured output through the client's own response_format shape; the golden model
// has random weights, so a valid object is the constraint's doing.
const schema = {
  type: "object",
  properties: { name: { type: "string", maxLength: 10 }, n: { type: "integer", minimum: 0, maximum: 9 }, tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 2 } },
  required: ["name", "n", "tags"],
  additionalProperties: false,
};
for (const seed of [1, 2, 3]) {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Give me JSON" }],
    seed,
    max_tokens: 96,
    max_reasoning_tokens: 4,
    response_format: { type: "json_schema", json_schema: { name: "thing", strict: true, schema } },
  });
  const v = JSON.parse(r.choices[0].message.content);
  assert.equal(typeof v.name, "string");
  assert.ok(Number.isInteger(v.n) && v.n >= 0 && v.n <= 9);
  assert.ok(Array.isArray(v.tags) && v.tags.every((t) => t === "a" || t === "b"));
  assert.deepEqual(Object.keys(v).sort(), ["n", "name", "tags"]);
}
// Tools: a required call, streamed as tool_call deltas, then the whole round trip.
const tools = [{ type: "function", function: { name: "get_weather", description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"] } } }];
const forced = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Weather in Paris?" }], tools, tool_choice: "required", max_tokens: 96, max_reasoning_tokens: 4,
});
const call = forced.choices[0].message.tool_calls[0];
assert.equal(forced.choices[0].finish_reason, "tool_calls");
assert.equal(call.function.name, "get_weather");
assert.equal(typeof JSON.parse(call.function.arguments).city, "string");
const streamed = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Weather in Oslo?" }], tools, tool_choice: { type: "function", function: { name: "get_weather" } },
  max_tokens: 96, max_reasoning_tokens: 4, stream: true,
});
let streamedArgs = "", streamedName = "", streamedFinish = null;
for await (const chunk of streamed) {
  for (const c of chunk.choices) {
    for (const t of c.delta.tool_calls ?? []) {
      if (t.function?.name) streamedName += t.function.name;
      if (t.function?.arguments) streamedArgs += t.function.arguments;
    }
    if (c.finish_reason) streamedFinish = c.finish_reason;
  }
}
assert.equal(streamedName, "get_weather");
assert.equal(typeof JSON.parse(streamedArgs).city, "string");
assert.equal(streamedFinish, "tool_calls");
const answer = await client.chat.completions.create({
  model, tools, max_tokens: 8,
  messages: [{ role: "user", content: "Weather in Paris?" }, forced.choices[0].message,
             { role: "tool", tool_call_id: call.id, content: "18 C, sunny" }],
});
assert.ok(answer.choices[0].message, "an answer after the tool result");
// A parameter jevons would otherwise ignore is refused, naming it.
await assert.rejects(client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], mirostat: 2 }),
  (e) => e.status === 400 && e.param === "mirostat");

await assert.rejects(client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
                     (e) => e.status === 404);
const bad = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
await assert.rejects(bad.models.list(), (e) => e.status === 401);
console.log("openai-node e2e: OK");

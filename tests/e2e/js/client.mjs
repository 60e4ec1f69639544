// The official OpenAI JavaScript SDK against the gateway: one scenario per run, its result
// as one JSON line on stdout (tests/e2e/test_js_sdk.py reads it).
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.GATEWAY_URL,
  apiKey: process.env.GATEWAY_KEY,
  maxRetries: 0,
});
const model = process.env.GATEWAY_MODEL;
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
  },
};
const ask = [{ role: "user", content: "What is the weather in Paris?" }];

const scenarios = {
  // The documentation's streaming loop: chunk.choices[0] on every chunk.
  async "stream-chat"() {
    const stream = await client.chat.completions.create({
      model, stream: true, temperature: 0, max_tokens: 30,
      messages: [{ role: "user", content: "What is the capital of France?" }],
    });
    let text = "";
    let chunks = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0].delta.content ?? "";
      chunks += 1;
    }
    return { text, chunks };
  },
  // The SDK's own stream helper assembles tool calls from the deltas.
  async "stream-tool"() {
    const runner = client.chat.completions.stream({
      model, messages: ask, tools: [weather], tool_choice: "required",
      temperature: 0, max_tokens: 60, stream_options: { include_usage: true },
    });
    const final = await runner.finalChatCompletion();
    return {
      finish_reason: final.choices[0].finish_reason,
      tool_calls: final.choices[0].message.tool_calls,
      usage: final.usage,
    };
  },
  async "json-schema"() {
    const reply = await client.chat.completions.create({
      model, temperature: 0, max_tokens: 60,
      messages: [{ role: "user", content: "Invent a person with a name and an age." }],
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "person", strict: true,
          schema: {
            type: "object",
            properties: { name: { type: "string" }, age: { type: "integer" } },
            required: ["name", "age"], additionalProperties: false,
          },
        },
      },
    });
    return { finish_reason: reply.choices[0].finish_reason, content: reply.choices[0].message.content };
  },
  // The Responses API's event stream, read by the SDK's helper.
  async "responses-stream"() {
    const stream = client.responses.stream({
      model, input: "What is the capital of France?", max_output_tokens: 30, temperature: 0,
    });
    const types = [];
    let text = "";
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    const final = await stream.finalResponse();
    return { types, text, output_text: final.output_text, usage: final.usage };
  },
  // An adapter by name (GATEWAY_ADAPTER): reasoning read from the chat stream's deltas and
  // from the Responses stream's reasoning events and final reasoning item.
  async "adapter-reasoning"() {
    const adapter = process.env.GATEWAY_ADAPTER;
    const question = "What is 12 + 30?";
    const stream = await client.chat.completions.create({
      model: adapter, stream: true, temperature: 0, max_tokens: 96,
      messages: [{ role: "user", content: question }],
      stream_options: { include_usage: true },
    });
    let reasoning = "";
    let content = "";
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices[0]?.delta ?? {};
      reasoning += delta.reasoning_content ?? "";
      content += delta.content ?? "";
    }
    const events = client.responses.stream({
      model: adapter, input: question, max_output_tokens: 96, temperature: 0,
    });
    let reasoningEvents = "";
    for await (const event of events) {
      if (event.type === "response.reasoning_text.delta") reasoningEvents += event.delta;
    }
    const final = await events.finalResponse();
    const item = final.output.find((o) => o.type === "reasoning");
    const itemText = (item?.content ?? []).map((c) => c.text).join("");
    return { reasoning, content, usage, reasoningEvents, itemText, output_text: final.output_text };
  },
};

const name = process.argv[2];
if (!(name in scenarios)) {
  console.error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await scenarios[name]()));
} catch (error) {
  console.error(error);
  process.exit(1);
}

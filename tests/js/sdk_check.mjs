// Drives @google/genai (JS) against the local server named by GOOGLE_GEMINI_BASE_URL, the way
// the quickstart does (new GoogleGenAI({}), key from GEMINI_API_KEY), and prints one JSON
// summary line for tests/server/test_server_js_sdk.py to check.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const out = {};

const created = await ai.interactions.create({
  model: "gemini-3.5-flash",
  input: "Explain how AI works in a few words",
});
out.create = { id: created.id, status: created.status, output_text: created.output_text,
               steps: created.steps.map((s) => s.type), model: created.model };

const stream = await ai.interactions.create({
  model: "gemini-3.5-flash", input: "Explain how AI works", stream: true,
});
const events = [];
for await (const event of stream) events.push(event);
out.stream = {
  types: events.map((e) => e.event_type),
  ids: events.map((e) => e.event_id),
  text: events.filter((e) => e.event_type === "step.delta" && e.delta.type === "text")
    .map((e) => e.delta.text).join(""),
  final_status: events.at(-1).interaction?.status,
};

const got = await ai.interactions.get(created.id);
out.get = { id: got.id, status: got.status, output_text: got.output_text };

const second = await ai.interactions.create({
  model: "gemini-3.5-flash", input: "How many paws?", previous_interaction_id: created.id,
});
out.stateful = { output_text: second.output_text, previous: second.previous_interaction_id };

try {
  await ai.interactions.get("v1_does_not_exist");
  out.not_found = "no error";
} catch (e) {
  out.not_found = { status: e.status, message: e.message };
}

console.log(JSON.stringify(out));

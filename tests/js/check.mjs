// The checks both JS SDK versions run (tests/js: @google/genai 2.x, tests/js3: 3.x): the SDK's
// GoogleGenAI class is passed in, so each directory's own node_modules provides it.
export async function check(GoogleGenAI) {
  // The paths the SDK calls (2.x uses /v1beta, 3.x /v1): recorded around the global fetch.
  const paths = new Set();
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = typeof input === "string" || input instanceof URL ? input : input.url;
    paths.add(`${init?.method ?? input.method ?? "GET"} ${new URL(url).pathname.replace(/\/v1_[^/]*$/, "/ID")}`);
    return realFetch(input, init);
  };
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

  globalThis.fetch = realFetch;
  out.paths = [...paths].sort();
  return out;
}

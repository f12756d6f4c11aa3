// Drives @google/genai (JS) against the local server named by GOOGLE_GEMINI_BASE_URL, the way
// the quickstart does (new GoogleGenAI({}), key from GEMINI_API_KEY), and prints one JSON
// summary line for tests/server/test_server_js_sdk.py to check.
import { GoogleGenAI } from "@google/genai";
import { check } from "./check.mjs";

console.log(JSON.stringify(await check(GoogleGenAI)));

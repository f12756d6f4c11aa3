// The same checks as ../js/sdk_check.mjs, with the newest @google/genai 3.x of this directory.
import { GoogleGenAI } from "@google/genai";
import { check } from "../js/check.mjs";

console.log(JSON.stringify(await check(GoogleGenAI)));

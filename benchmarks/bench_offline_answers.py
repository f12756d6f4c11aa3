"""Offline answers a newcomer reads: are they English, on topic and free of loops?

    python benchmarks/bench_offline_answers.py [--max-tokens 120] [--seeds 3] [--show]
        [--try "temperature=0.5,min_p=0.1"]...

Sends a fixed set of everyday prompts (the quickstart's, the teaching notebook's, a data
person's, and the ones issue #22 quotes; two are follow-ups in a conversation) to the local
engine (SmolLM2-135M under llama.cpp, the model the offline server uses) once with llama.cpp's
own sampling defaults ("before": what the engine sent until issue #22) and once with the
engine's `DEFAULT_SAMPLING` ("after"), plus any `--try` settings, each with seed 0 (the engine's
default). The engine is called directly: the server adds nothing to a plain text turn (no
system prompt), so these are the answers a cell gets.

Each answer is scored by three simple checks (`score`):
- english: at least 98 % of its letters are ASCII, and at least 12 % of its words are common
  English function words (STOPWORDS), which gibberish and other languages miss;
- no loop: no 4 words in a row occur 3 or more times, and no character repeats 10 or more
  times in a row (an emoji loop);
- on topic: it contains one of the prompt's hand-made expectations (e.g. "paris" for the
  capital of France, "paw" or "dog" for the paws).
An answer is sane when it passes all three; the goal is 15 of 16 (here 19 of 20) or better with
the defaults.

Replies are capped at --max-tokens (default 120, not the engine's 512) because the model is
slow on 2 busy cores: 20 answers take 30-40 s on a quiet machine, 75-120 s on a busy one. Loops
that start later are not seen at 120: run --max-tokens 512 too (a few minutes).

Measured (2-core machine, xllamacpp 2026.10, SmolLM2-135M Q4_1), sane answers of 20:

                                 before (llama.cpp defaults)   after (DEFAULT_SAMPLING)
    seed 0, 120 tokens           11                            19
    seeds 0, 1, 2, 120 tokens    47 of 60                      55 of 60
    seed 0, 512 tokens           10                            19

Before, seed 0 (what a cell gets) answered the dogs in Polish-looking gibberish, said "Alsace"
for the capital of France and looped on the haiku and the data scientist. After, the miss left
at seed 0 is "I have 2 dogs in my house." answered without naming a pet; at seeds 2 and 3 that
prompt starts with an emoji and goes on in emoji, which no setting tried removed (min_p 0.1 or
0.2, top_k 20, temperature 0.2; the model's own system prompt is already applied).

Also tried (temperature 0.3 and top_p 0.9 unless said): repeat penalty 1.15 over 64 tokens
(116 of 120 over seeds 0-5 at 120 tokens, but a recipe looped paragraph by paragraph at 512:
16 of 20 there), over 128 (113 of 120), over 256 (112 of 120, and 19 of 20 at 512: chosen);
penalty 1.1 over 64 (57 of 60 over seeds 0-2: an emoji loop), 1.2 over 64 (115 of 120); the
same at temperature 0.2 (57 of 60); temperature 0.3 alone (16 of 20 at seed 0: "a mix of a
mix of..."); DRY (dry_multiplier 0.8) instead of a repeat penalty (56 of 60).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gemini_magics.server.engines.base import EngineRequest, GenerationParams  # noqa: E402
from gemini_magics.server.engines.local import DEFAULT_SAMPLING, LocalEngine  # noqa: E402

TEACHER = "You are a patient teacher. Answer in two short sentences."

# (system instruction or None, [(user turn, expectations), ...]); a later turn follows the
# model's own earlier answers, as a conversation in a notebook does.
CONVERSATIONS = [
    (None, [("Explain how AI works in a few words",
             ["ai", "artificial", "intelligen", "learn", "data", "machine", "computer"])]),
    (None, [("Explain how AI works",
             ["ai", "artificial", "intelligen", "learn", "data", "machine", "computer"])]),
    (None, [("I have 2 dogs in my house.", ["dog", "pet", "pupp"]),
            ("How many paws are in my house?", ["paw", "dog", "eight", "8"])]),
    (None, [("Give me a recipe for banana bread", ["banana", "flour", "bread"])]),
    (None, [("Who won the euro 2024?", ["euro", "2024", "football", "soccer", "team", "won"])]),
    (None, [("What is the temperature in London?", ["london", "temperature", "weather", "°"])]),
    (None, [("Write a detailed analysis of the impact of artificial intelligence on modern "
             "healthcare.", ["health", "medic", "patient", "artificial", "ai "])]),
    (None, [("What is a prime number?", ["prime", "divis", "factor"])]),
    (TEACHER, [("What is a prime number?", ["prime", "divis", "factor"])]),
    (None, [("Explain photosynthesis to a ten-year-old in three sentences.",
             ["plant", "sun", "light", "photosynth", "leaf", "leaves"]),
            ("Give me one simple experiment that shows it.",
             ["plant", "leaf", "leaves", "light", "water", "sun", "experiment"])]),
    (None, [("Write one multiple-choice question about the solar system.",
             ["planet", "sun", "solar", "earth", "orbit", "mars", "jupiter", "venus", "saturn",
              "mercury", "moon"])]),
    (None, [("In one sentence, describe a yellow banana.", ["banana", "yellow", "fruit"])]),
    (None, [("Name one country whose flag is mostly red.", ["flag", "red", "country"])]),
    (None, [("What is the capital of France?", ["paris"])]),
    (None, [("Write a haiku about the sea.", ["sea", "wave", "ocean", "water", "tide", "shore"])]),
    (None, [("What does a data scientist do?", ["data"])]),
    (None, [("How do I read a CSV file with pandas?", ["read_csv", "pandas", "csv"])]),
    (None, [("What is the difference between the mean and the median?",
             ["mean", "median", "average"])]),
]

STOPWORDS = frozenset("""
a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those there here i you he she we they me him her us them my your his our their
what which who how when where why not no do does did can could will would should may might
have has had so than then too very just also into about over more most such each other all any
some one two
""".split())


@dataclass
class Score:
    english: bool
    no_loop: bool
    on_topic: bool

    @property
    def sane(self) -> bool:
        return self.english and self.no_loop and self.on_topic

    def marks(self) -> str:
        return "".join(c if ok else "." for c, ok in
                       (("E", self.english), ("L", self.no_loop), ("T", self.on_topic)))


def is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    words = re.findall(r"[a-z']+", text.lower())
    if not letters or not words:
        return False
    ascii_share = sum(c.isascii() for c in letters) / len(letters)
    stop_share = sum(w in STOPWORDS for w in words) / len(words)
    return ascii_share >= 0.98 and stop_share >= 0.12


def loop_of(text: str) -> str:
    """What repeats ('' if nothing does): a character 10 times in a row, or 4 words 3 times."""
    run = re.search(r"(\S)\1{9,}", text)
    if run:
        return run.group(0)
    words = re.findall(r"\w+", text.lower())
    seen: dict = {}
    for i in range(len(words) - 3):
        gram = tuple(words[i:i + 4])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] >= 3:
            return " ".join(gram)
    return ""


def score(text: str, expect: list[str]) -> Score:
    low = text.lower()
    return Score(is_english(text), not loop_of(text), any(e in low for e in expect))


def run(engine: LocalEngine, sampling: dict, max_tokens: int,
        seed: int = 0) -> list[tuple[str, str, Score]]:
    """Every prompt's (prompt, answer, score) with `sampling` as the engine's defaults."""
    engine.sampling = dict(sampling)
    rows = []
    for system, turns in CONVERSATIONS:
        messages = [{"role": "system", "content": system}] if system else []
        for prompt, expect in turns:
            messages.append({"role": "user", "content": prompt})
            request = EngineRequest(model="local", messages=list(messages),
                                    params=GenerationParams(max_output_tokens=max_tokens, seed=seed))
            answer = engine.generate(request, lambda _chunk: True).text
            messages.append({"role": "assistant", "content": answer})
            shown = f"[teacher] {prompt}" if system else prompt
            rows.append((shown, answer, score(answer, expect)))
    return rows


def parse_setting(text: str) -> dict:
    out = {}
    for part in text.replace(" ", ",").split(","):
        if part:
            key, _, value = part.partition("=")
            out[key] = float(value) if "." in value else int(value)
    return out


def label(sampling: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sampling.items()) or "llama.cpp defaults"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=1,
                    help="also score seeds 1..N-1 (other draws, as other prompts would be)")
    ap.add_argument("--try", dest="tries", action="append", default=[],
                    help="another setting to score, e.g. 'temperature=0.5,min_p=0.1'")
    ap.add_argument("--no-before", action="store_true", help="skip llama.cpp's defaults")
    ap.add_argument("--show", action="store_true", help="print every answer")
    args = ap.parse_args()

    settings = ([] if args.no_before else [("before", {})]) + [("after", DEFAULT_SAMPLING)]
    settings += [(f"try{i + 1}", parse_setting(t)) for i, t in enumerate(args.tries)]
    engine = LocalEngine()
    engine.load()
    results: dict = {}  # (setting name, seed) -> rows
    for name, sampling in settings:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            rows = results[name, seed] = run(engine, sampling, args.max_tokens, seed)
            print(f"{name} seed {seed}: {label(sampling)}: {sum(s.sane for _, _, s in rows)}/"
                  f"{len(rows)} sane ({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.show:
                for prompt, answer, s in rows:
                    loop = f" (repeats: {loop_of(answer)!r})" if not s.no_loop else ""
                    print(f"  [{s.marks()}] {prompt}{loop}\n      {' '.join(answer.split())[:400]}")

    names = [n for n, _ in settings]
    print(f"\nOffline answers, seed 0, max {args.max_tokens} tokens "
          f"(E english, L no loop, T on topic; '.' failed)")
    print(f"{'prompt':<48} " + " ".join(f"{n:>7}" for n in names))
    for i, (prompt, _, _) in enumerate(results[names[0], 0]):
        marks = [results[n, 0][i][2] for n in names]
        print(f"{prompt[:47]:<48} " + " ".join(
            f"{m.marks() + (' ok' if m.sane else '   '):>7}" for m in marks))
    for seed in range(args.seeds):
        print(f"{f'sane answers, seed {seed}':<48} " + " ".join(
            f"{sum(s.sane for _, _, s in results[n, seed]):>4}/{len(results[n, seed]):<2}"
            for n in names))
    if args.seeds > 1:
        print(f"{'sane answers, all seeds':<48} " + " ".join(
            f"{sum(s.sane for k in range(args.seeds) for _, _, s in results[n, k]):>7}"
            for n in names))
    for name, sampling in settings:
        print(f"  {name}: {label(sampling)}")
    engine.close()


if __name__ == "__main__":
    main()

"""Image benchmarks: offline render time per size, and the cost of decoding and displaying 4K images.

    python benchmarks/bench_images.py            # full table (about a minute on 2 cores)
    python benchmarks/bench_images.py --quick    # fewer repeats

Memory is measured in a fresh child process per case, so one measurement cannot inherit another's
high-water mark: "RSS peak" is the growth of the process's maximum resident size during the
operation (the high-water mark is reset first through /proc/self/clear_refs; Pillow's pixel buffers are malloc'ed in C and invisible to tracemalloc), "py peak" the
tracemalloc peak of Python objects (base64 text, encoded bytes). The input base64 string is
already in memory before measuring, as it is when the SDK hands us a parsed response.
"""
from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from gemini_magics.images import decode_image, image_mimebundle  # noqa: E402
from gemini_magics.server.draw import image_dimensions, render_image  # noqa: E402

PROMPT = "Generate an image of a futuristic city skyline at sunset"
MB = 1024 * 1024


def _status(field: str) -> int:
    """VmRSS / VmHWM of this process in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0) and return it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


# ----------------------------------------------------------------------------- child side
def _run(op: str, part: dict, img):
    """The operation under test; returns what it built (kept alive until measured)."""
    if op.startswith("render:"):  # "render:SIZE,ASPECT": the server side
        size, aspect = op.split(":", 1)[1].split(",")
        return render_image(PROMPT, aspect_ratio=aspect, image_size=size)
    if op == "decode":
        return decode_image(part)
    if op == "bundle_part":
        return image_mimebundle(part)
    if op == "decode+display":  # what the magic does: PIL for .images, the part for display
        return decode_image(part), image_mimebundle(part)
    if op == "bundle_pil":
        return image_mimebundle(img)
    raise SystemExit(f"unknown op {op}")


def _child(path: str, op: str) -> None:
    part = None
    if path != "-":
        spec = json.loads(Path(path).read_text())
        part = {"type": "image", "data": spec["data"], "mime_type": spec["mime"]}
        del spec
    # bundle_pil starts from a decoded image, as `display(result.image)` would.
    img = decode_image(part) if op == "bundle_pil" else None
    gc.collect()
    # Pass 1, untraced: wall time and RSS high-water mark.
    rss0, t0 = _reset_peak(), time.perf_counter()
    out = _run(op, part, img)
    elapsed = time.perf_counter() - t0
    rss_peak = _status("VmHWM") - rss0
    decoded = out[0] if op == "decode+display" else out if op == "decode" else img
    pixels = decoded.width * decoded.height * len(decoded.getbands()) if decoded is not None else None
    if op.startswith("render:"):
        decoded, pixels = None, len(out[0])  # for a render: the encoded size
    del out, decoded
    gc.collect()
    # Pass 2, under tracemalloc (which slows allocation): Python-object peak only.
    tracemalloc.start()
    out = _run(op, part, img)
    py_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out
    print(json.dumps({"seconds": elapsed, "rss_peak": rss_peak, "py_peak": py_peak, "decoded": pixels}))


# ----------------------------------------------------------------------------- parent side
def _photo_like_4k(aspect: str) -> tuple[bytes, str]:
    """A 4K PNG that compresses like a photo (noise over gradients), unlike our flat drawings."""
    w, h = image_dimensions(aspect, "4K")
    base = Image.open(io.BytesIO(render_image(PROMPT, aspect_ratio=aspect, image_size="4K")[0])).convert("RGB")
    noise = Image.effect_noise((w, h), 40).convert("RGB")
    img = Image.blend(base, noise, 0.35)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue(), "image/png"


def _measure(data: bytes | None, mime: str | None, op: str, repeats: int) -> dict:
    name = "-"
    if data is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"data": base64.b64encode(data).decode(), "mime": mime}, f)
        name = f.name
    try:
        runs = []
        for _ in range(repeats):
            done = subprocess.run([sys.executable, __file__, "--child", name, op], capture_output=True,
                                  text=True, timeout=300, check=True)
            runs.append(json.loads(done.stdout))
    finally:
        if name != "-":
            os.unlink(name)
    best = min(runs, key=lambda r: r["seconds"])
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_peak": max(r["rss_peak"] for r in runs), "py_peak": best["py_peak"],
            "decoded": best["decoded"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat instead of three")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    repeats = 1 if args.quick else 3

    print("Offline render (server side), fresh process per run, median of", repeats, "runs")
    print(f"{'size':>5} {'aspect':>6} {'pixels':>11} {'PNG KB':>8} {'render ms':>10} {'RSS peak MB':>12} "
          f"{'canvas MB':>10}")
    for size in ("512", "1K", "2K", "4K"):
        for aspect in ("1:1", "16:9"):
            r = _measure(None, None, f"render:{size},{aspect}", repeats)
            w, h = image_dimensions(aspect, size)
            print(f"{size:>5} {aspect:>6} {f'{w}x{h}':>11} {r['decoded'] / 1000:>8.0f} "
                  f"{r['seconds'] * 1000:>10.0f} {r['rss_peak'] / MB:>12.1f} {w * h * 4 / MB:>10.1f}")

    print("\nDecode and display a 4K image (client side), fresh process per run")
    print(f"{'image':<22} {'operation':<15} {'ms':>6} {'RSS peak MB':>12} {'py peak MB':>11} "
          f"{'decoded MB':>11} {'peak/decoded':>13}")
    cases = [("drawn 4K 1:1 PNG", *render_image(PROMPT, aspect_ratio="1:1", image_size="4K")),
             ("drawn 4K 16:9 PNG", *render_image(PROMPT, aspect_ratio="16:9", image_size="4K")),
             ("photo-like 4K 1:1 PNG", *_photo_like_4k("1:1"))]
    for name, data, mime in cases:
        w, h = Image.open(io.BytesIO(data)).size
        decoded = w * h * 3
        label = f"{name} ({len(data) / MB:.1f} MB)"
        for op in ("decode", "bundle_part", "decode+display", "bundle_pil"):
            r = _measure(data, mime, op, repeats)
            print(f"{label:<22} {op:<15} {r['seconds'] * 1000:>6.0f} {r['rss_peak'] / MB:>12.1f} "
                  f"{r['py_peak'] / MB:>11.1f} {decoded / MB:>11.1f} {r['rss_peak'] / decoded:>13.2f}")
            label = ""
    print("\ndecoded MB = width x height x 3 bytes; Pillow keeps RGB as 4 bytes a pixel, so 1.33 is the "
          "decoded image itself\nand nothing more. bundle_part reuses the response's base64 (no decode, "
          "no re-encode); bundle_pil\nencodes a PIL image (PNG, compress_level 1), for images the user "
          "made or changed.")


if __name__ == "__main__":
    main()

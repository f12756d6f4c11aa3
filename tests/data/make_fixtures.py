"""Regenerate the tiny media fixtures in this folder: `python tests/data/make_fixtures.py`.

Kept in git (a few KB in all) so tests read real files; this script documents how they were made.
"""
import math
import struct
import wave
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def main() -> None:
    img = Image.new("RGB", (16, 12), (40, 80, 200))
    ImageDraw.Draw(img).rectangle((4, 3, 11, 8), fill=(250, 250, 250))
    img.save(HERE / "tiny.png")
    img.resize((32, 24)).save(HERE / "photo.jpg", quality=85)
    (HERE / "corrupt.png").write_bytes((HERE / "tiny.png").read_bytes()[:40] + b"\0garbage" * 4)
    (HERE / "truncated.jpg").write_bytes((HERE / "photo.jpg").read_bytes()[:300])

    with wave.open(str(HERE / "tone.wav"), "wb") as w:  # 0.5 s, 440 Hz, mono, 8 kHz, 16-bit
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                               for i in range(4000)))

    pages = [Image.new("RGB", (60, 80), c) for c in ((255, 255, 255), (230, 230, 230))]
    pages[0].save(HERE / "two_pages.pdf", save_all=True, append_images=pages[1:])

    (HERE / "table.csv").write_text("city,country,population\nTaipei,Taiwan,2500000\n"
                                    "Lyon,France,520000\nQuito,Ecuador,2800000\n")
    (HERE / "notes.txt").write_text("Shopping list\nmilk\neggs\n")


if __name__ == "__main__":
    main()

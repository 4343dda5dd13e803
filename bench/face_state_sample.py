"""Sample lfw_dev faces for hand labels of EyesOpen, MouthOpen and Smile, and draw numbered montages to label from.

120 images, one per person, drawn with a fixed seed from lfw_dev (sorted person folders); the labels, given by
eye from the montages, are committed in bench/data/face_state_labels.csv (image, eyes_open, mouth_open, smile;
1 yes, 0 no, blank when it cannot be told: blurred, hidden or squinting); labelled 2026-11-30 by one
helper from the montages, once, without a second rater. Montages (not committed) go to --out:

    python bench/face_state_sample.py --out /tmp/face_state
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
N, SEED, PER_SHEET, COLS, CELL = 120, 13, 30, 6, 150


def sample() -> list[Path]:
    people = sorted(p for p in (DATA / "lfw_dev").iterdir() if p.is_dir())
    rng = random.Random(SEED)
    return [sorted(p.glob("*.jpg"))[0] for p in rng.sample(people, N)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = sample()
    for s in range(0, N, PER_SHEET):
        sheet = Image.new("RGB", (COLS * CELL, (PER_SHEET // COLS) * CELL), "white")
        draw = ImageDraw.Draw(sheet)
        for k, path in enumerate(paths[s:s + PER_SHEET]):
            face = Image.open(path).convert("RGB").crop((65, 60, 185, 190)).resize((CELL - 10, CELL - 10))
            x, y = (k % COLS) * CELL, (k // COLS) * CELL
            sheet.paste(face, (x + 5, y + 5))
            draw.rectangle((x + 5, y + 5, x + 30, y + 20), fill="yellow")
            draw.text((x + 7, y + 6), str(s + k), fill="black")
        sheet.save(args.out / f"sheet_{s // PER_SHEET}.png")
    (args.out / "images.txt").write_text("".join(f"{i},{p.name}\n" for i, p in enumerate(paths)))


if __name__ == "__main__":
    main()

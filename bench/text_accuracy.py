"""DetectText's defaults by measurement: character accuracy of faceledger.analysis.text.TextReader.

Images: scikit-image's ``page()`` (a photographed book page, 384x191; its 7 lines typed here as truth) and text
rendered here with Pillow in a Debian font (DejaVu Sans, fonts-dejavu-core; matplotlib's copy of it where
Debian's is missing) at several sizes, rotations and backgrounds (white, dark, a photograph, noise). For each
upscaling target (the detector's smaller side, ``min_side``) it prints the character accuracy (1 - CER, reading
order top to bottom) per image group and the seconds per image; then, at the default ``min_side``, the words
read and whether each is a word of the truth, by confidence: what each WordFilter MinConfidence keeps and
drops, and the words "read" in images with no text at all (scikit-image photographs, LFW faces).

    nice -n 5 python bench/text_accuracy.py [--sides 0,480,736,960] [--default-side 480] [--faces 20]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceledger.analysis.text import TextReader, character_accuracy  # noqa: E402

PAGE_TRUTH = """Region-based segmentation
Let us first determine markers of the coins and the
background. These markers are pixels that we can label
unambiguously as either object or background. Here,
the markers are found at the two extreme parts of the
histogram of grey values:
>>> markers = np.zeros_like(coins)"""

SENTENCES = ["Quarterly report 2024: revenue up 12%", "PLEASE KEEP THIS DOOR CLOSED",
             "Main Street Bakery", "Invoice No. 55-1830 due 07/12", "exit only"]


def font_path() -> str:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if os.path.exists(path):
            return path
    import matplotlib

    return str(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")


def render(text: str, size: int, angle: float, background: str, seed: int = 0) -> np.ndarray:
    """``text`` in DejaVu Sans at ``size`` px, rotated by ``angle`` degrees, on ``background`` (white, dark,
    photo, noise); an RGB array at least 200 px a side."""
    font = ImageFont.truetype(font_path(), size)
    left, top, right, bottom = font.getbbox(text)
    pad = size
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    ink = Image.new("L", (w, h), 0)
    ImageDraw.Draw(ink).text((pad - left, pad - top), text, font=font, fill=255)
    ink = ink.rotate(angle, expand=True, resample=Image.BICUBIC)
    W, H = max(ink.width, 200), max(ink.height, 200)
    rng = np.random.default_rng(seed)
    if background == "white":
        base, colour = np.full((H, W, 3), 255, np.uint8), (20, 20, 20)
    elif background == "dark":
        base, colour = np.full((H, W, 3), (30, 40, 70), np.uint8), (250, 250, 210)
    elif background == "photo":
        import skimage.data

        photo = Image.fromarray(skimage.data.coffee()).resize((W, H))
        base, colour = np.asarray(photo, np.uint8).copy(), (255, 255, 255)
    else:  # noise
        base = rng.integers(90, 200, (H, W, 3)).astype(np.uint8)
        colour = (0, 0, 0)
    canvas = Image.fromarray(base)
    canvas.paste(Image.new("RGB", ink.size, colour), ((W - ink.width) // 2, (H - ink.height) // 2), ink)
    return np.asarray(canvas)


def rendered_cases() -> list[tuple[str, np.ndarray, str]]:
    """(group, image, truth): 5 sentences x sizes, rotations and backgrounds (one factor varied at a time)."""
    cases = []
    for i, text in enumerate(SENTENCES):
        for size in (10, 14, 20, 32, 56):
            cases.append((f"size {size}px", render(text, size, 0, "white", i), text))
        for angle in (8, 25, 90, 180):
            cases.append((f"rotated {angle}", render(text, 24, angle, "white", i), text))
        for background in ("dark", "photo", "noise"):
            cases.append((f"on {background}", render(text, 24, 0, background, i), text))
        # small and compressed: rendered at 24 px, shrunk to a third (8 px text) and saved as a JPEG of quality 40
        small = Image.fromarray(render(text, 24, 0, "white", i))
        small = small.resize((small.width // 3, small.height // 3), Image.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=40)
        cases.append(("8px JPEG q40", np.asarray(Image.open(buffer).convert("RGB")), text))
    return cases


def read_text(reader: TextReader, image: np.ndarray) -> tuple[str, list]:
    lines = reader.read(image)
    return "\n".join(line.text for line in lines), lines


def no_text_images(faces: int) -> list[tuple[str, np.ndarray]]:
    import skimage.data

    out = [(name, getattr(skimage.data, name)()) for name in ("coffee", "chelsea", "astronaut")]
    lfw = ROOT.parent / "shared" / "data" / "lfw_dev"
    for path in sorted(lfw.glob("*/*_0001.jpg"))[:faces]:
        out.append((path.name, np.asarray(Image.open(path).convert("RGB"))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", default="0,480,736,960")
    ap.add_argument("--default-side", type=int, default=480)
    ap.add_argument("--faces", type=int, default=20)
    args = ap.parse_args()
    import skimage.data

    page = np.stack([skimage.data.page()] * 3, -1)
    cases = [("page()", page, PAGE_TRUTH)] + rendered_cases()
    print(f"{len(cases)} images: page() and {len(cases) - 1} rendered (DejaVu Sans, {font_path()})")
    groups = list(dict.fromkeys(g for g, _, _ in cases))
    results = {}
    for side in [int(s) for s in args.sides.split(",")]:
        reader = TextReader(min_side=side, threads=1)
        per: dict[str, list[float]] = {g: [] for g in groups}
        t0 = time.perf_counter()
        words = []
        for group, image, truth in cases:
            text, lines = read_text(reader, image)
            per[group].append(character_accuracy(text, truth))
            truth_words = Counter(truth.split())
            for line in lines:
                for word in line.words:
                    words.append((word.confidence, truth_words[word.text] > 0))
        seconds = (time.perf_counter() - t0) / len(cases)
        results[side] = (per, seconds, words)
        rendered = [a for g, v in per.items() if g != "page()" for a in v]
        print(f"\nmin_side {side}: page() {per['page()'][0]:.3f}, rendered mean {np.mean(rendered):.3f}, "
              f"{seconds:.2f} s/image (one core)")
        for g in groups[1:]:
            print(f"   {g:14s} {np.mean(per[g]):.3f}  ({len(per[g])} images)")
    reader = TextReader(min_side=args.default_side, threads=1)
    empty = []
    for name, image in no_text_images(args.faces):
        for line in reader.read(image):
            for word in line.words:
                empty.append((word.confidence, name, word.text))
    for side, (_, _, words) in results.items():
        print(f"\nwords by confidence at min_side {side}: {len(words)} read in the text images"
              + (f"; {len(empty)} read in {3 + args.faces} images without text" if side == args.default_side else ""))
        print("MinConfidence  words kept  of them right  right dropped" +
              ("  no-text words kept" if side == args.default_side else ""))
        right_total = sum(1 for _, ok in words if ok)
        for threshold in (0, 50, 60, 70, 80, 85, 90, 95):
            kept = [ok for c, ok in words if 100 * c >= threshold]
            extra = (f"  {sum(1 for c, _, _ in empty if 100 * c >= threshold):18d}" if side == args.default_side
                     else "")
            print(f"{threshold:13d}  {len(kept):10d}  {sum(kept):13d}  {right_total - sum(kept):13d}{extra}")
    for c, name, text in sorted(empty, reverse=True)[:15]:
        print(f"   no-text image {name}: {text!r} {100 * c:.1f}")


if __name__ == "__main__":
    main()

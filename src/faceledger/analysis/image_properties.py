"""DetectLabels' IMAGE_PROPERTIES: quality (brightness, sharpness, contrast) and dominant colours of a whole
image. No model: measurements, each on a documented 0-100 scale.

* Brightness: mean luma (ITU-R BT.601) / 255 x 100 -- the face Quality's scale (vision.geometry.brightness).
* Sharpness: the face Quality's scale (vision.geometry.sharpness): 100 x (1 - exp(-v / 300)), v the variance of
  the 4-neighbour Laplacian of the image resized to 128x128 grey.
* Contrast: RMS contrast, the standard deviation of luma / 127.5 x 100 (100: half the pixels black, half white).
* DominantColors: PIL's median-cut quantisation of the image (thumbnail of at most 160 px a side) into at most
  ``max_colors`` colours, largest share first; each with its RGB, hex code, the nearest CSS colour name (PIL's
  CSS table, by RGB distance) and one of 12 simplified names (black, white, gray, red, orange, yellow, green,
  teal, blue, purple, pink, brown; from its hue, saturation and value). PixelPercent: its share of the pixels.
  No foreground/background split: nothing here can separate them honestly, so neither is returned.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageColor

from ..vision.geometry import brightness, sharpness

THUMBNAIL = 160


@dataclass(frozen=True)
class DominantColor:
    red: int
    green: int
    blue: int
    hex_code: str
    css_color: str
    simplified_color: str
    pixel_percent: float


@dataclass(frozen=True)
class ImageQuality:
    brightness: float
    sharpness: float
    contrast: float


def quality(rgb: np.ndarray) -> ImageQuality:
    h, w = rgb.shape[:2]
    box = (0.0, 0.0, float(w), float(h))
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    contrast = min(100.0, float(np.std(luma)) / 127.5 * 100.0)
    return ImageQuality(brightness(rgb, box), sharpness(rgb, box), contrast)


@lru_cache(maxsize=1)
def _css_table() -> tuple[list[str], np.ndarray]:
    names = sorted(n for n in ImageColor.colormap if ImageColor.colormap[n].startswith("#"))
    values = np.array([ImageColor.getrgb(ImageColor.colormap[n])[:3] for n in names], dtype=np.float64)
    return names, values


def css_name(rgb: tuple[int, int, int]) -> str:
    names, values = _css_table()
    return names[int(np.argmin(((values - np.asarray(rgb, dtype=np.float64)) ** 2).sum(axis=1)))]


def simplified_name(rgb: tuple[int, int, int]) -> str:
    """One of 12 names from hue, saturation and value."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    if v < 0.18:
        return "black"
    if s < 0.15 or (s < 0.3 and v < 0.45):  # no hue to speak of: a grey (a dark one when slightly tinted)
        return "white" if v > 0.85 else "gray"
    hue = h * 360
    if hue < 45 and v < 0.6:  # a dark orange or red
        return "brown"
    if hue < 15 or hue >= 345:
        return "red"
    if hue < 45:
        return "orange"
    if hue < 70:
        return "yellow"
    if hue < 160:
        return "green"
    if hue < 195:
        return "teal"
    if hue < 260:
        return "blue"
    if hue < 300:
        return "purple"
    return "pink"


def dominant_colors(rgb: np.ndarray, max_colors: int = 10) -> list[DominantColor]:
    if max_colors <= 0:
        return []
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    quantized = image.quantize(colors=max_colors, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette()
    counts = sorted(quantized.getcolors(max_colors) or [], reverse=True)
    total = sum(c for c, _ in counts) or 1
    out = []
    for count, index in counts:
        r, g, b = palette[3 * index:3 * index + 3]
        out.append(DominantColor(r, g, b, f"#{r:02x}{g:02x}{b:02x}", css_name((r, g, b)), simplified_name((r, g, b)),
                                 100.0 * count / total))
    return out


__all__ = ["DominantColor", "ImageQuality", "css_name", "dominant_colors", "quality", "simplified_name"]

"""Photo degradations that cameras produce, for measuring what they do to Similarity (bench/degradation.py)
and for building degraded faces inside tests.

Each is a function of a decoded RGB uint8 photo and its sharp face (the FaceAnalysis the engine found on it:
box and landmarks place the downscaling and the covering bands). CONDITIONS names the severities measured.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["CONDITIONS", "as_camera_would", "degrade", "encode_png"]

# name -> (kind, parameter); "sharp" is the photo as it is
CONDITIONS: dict[str, tuple[str, float]] = {
    "sharp": ("none", 0),
    "blur r2": ("blur", 2), "blur r3": ("blur", 3), "blur r5": ("blur", 5),
    "face 40px": ("small", 40), "face 30px": ("small", 30), "face 20px": ("small", 20),
    "jpeg q30": ("jpeg", 30), "jpeg q20": ("jpeg", 20), "jpeg q10": ("jpeg", 10),
    "noise s8": ("noise", 8), "noise s16": ("noise", 16), "noise s25": ("noise", 25),
    "dark x0.35": ("dark", 0.35), "dark x0.15": ("dark", 0.15),
    "band eyes": ("occlude", 0), "band lower": ("occlude", 1),
}


def degrade(img: np.ndarray, kind: str, p: float, face, rng: np.random.Generator) -> np.ndarray:
    """One degradation of an RGB uint8 image; ``face``: the sharp photo's FaceAnalysis (box, landmarks)."""
    from PIL import Image, ImageFilter

    if kind == "none":
        return img
    if kind == "blur":
        return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=p)))
    if kind == "small":  # the camera sees the face at p px: the whole photo scaled, on a plain 250-px frame
        det = face.detection
        f = p / max(1.0, min(det.width, det.height))
        h, w = img.shape[:2]
        sw, sh = max(1, round(w * f)), max(1, round(h * f))
        small = np.asarray(Image.fromarray(img).resize((sw, sh), Image.BOX))
        canvas = np.full((max(h, 250), max(w, 250), 3), 118, np.uint8)
        y0, x0 = (canvas.shape[0] - sh) // 2, (canvas.shape[1] - sw) // 2
        canvas[y0:y0 + sh, x0:x0 + sw] = small
        return canvas
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=int(p))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if kind == "noise":  # sensor noise: Gaussian, independent per pixel and channel
        return np.clip(img + rng.normal(0.0, p, img.shape), 0, 255).astype(np.uint8)
    if kind == "dark":  # low light: exposure x p, gamma 1.2, then read noise (sigma 3) and 8-bit rounding
        lin = (img / 255.0) ** 1.2 * p
        return np.clip(lin * 255.0 + rng.normal(0.0, 3.0, img.shape), 0, 255).round().astype(np.uint8)
    if kind == "occlude":  # a dark band over the eyes (p=0) or from under the nose to the chin (p=1)
        out = img.copy()
        lm, det = face.landmarks, face.detection
        ey = 0.5 * (lm["eyeLeft"][1] + lm["eyeRight"][1])
        hgt = det.height
        if p == 0:
            y0, y1 = ey - 0.13 * hgt, ey + 0.13 * hgt
        else:
            y0, y1 = lm["nose"][1] + 0.06 * hgt, det.bottom + 0.05 * hgt
        x0, x1 = det.left - 0.05 * det.width, det.right + 0.05 * det.width
        ys = slice(max(0, int(y0)), max(0, int(y1)))
        xs = slice(max(0, int(x0)), max(0, int(x1)))
        out[ys, xs] = (35, 35, 40)
        return out
    raise ValueError(kind)


def encode_png(img: np.ndarray) -> bytes:
    """The photo as a lossless PNG file."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def encode(img: np.ndarray, kind: str, p: float) -> bytes:
    """The degraded photo as the file a camera would send: JPEG at quality ``p`` for the jpeg
    degradation, else lossless PNG (so that only the degradation itself is measured)."""
    from PIL import Image

    if kind != "jpeg":
        return encode_png(img)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(p))
    return buf.getvalue()


def as_camera_would(img: np.ndarray) -> np.ndarray:
    """Through the service's decoder, as a lossless PNG (the jpeg degradation is its own file)."""
    from ..vision.image import decode_image

    return decode_image(encode_png(img)).pixels

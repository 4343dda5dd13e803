"""Photo degradations that cameras produce, for measuring what they do to Similarity (bench/degradation.py)
and for building degraded faces inside tests.

Each is a function of a decoded RGB uint8 photo and its sharp face (the FaceAnalysis the engine found on it:
box and landmarks place the downscaling and the covering bands). CONDITIONS names the severities measured.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["CLEAN", "CONDITIONS", "OCCLUDERS", "as_camera_would", "clean", "degrade", "encode_png"]

#: the kinds of covering band degrade() draws (module docstring of each in degrade)
OCCLUDERS = ("occlude", "occlude noisy", "occlude hand", "occlude mask")

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
    if kind in OCCLUDERS:
        # a band over the eyes (p=0) or from under the nose to the chin (p=1), across the face: "occlude" dark
        # and uniform; "occlude noisy" the same with sensor noise on it (Gaussian, sigma 4 per channel), as a
        # camera sees a real dark occluder; "occlude hand" skin-coloured (the face's median colour), shaded
        # smoothly across (+-10 grey levels) with noise of sigma 2; "occlude mask" light blue with folds
        # (shading of +-6 levels, two periods over the band's height) and noise of sigma 1.5
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
        h, w = out[ys, xs].shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        if kind == "occlude":
            out[ys, xs] = (35, 35, 40)
            return out
        if kind == "occlude noisy":
            band, sigma = np.broadcast_to(np.array([35.0, 35.0, 40.0]), (h, w, 3)), 4.0
        elif kind == "occlude hand":
            box = img[max(0, int(det.top)):max(0, int(det.bottom)), max(0, int(det.left)):max(0, int(det.right))]
            skin = np.median(box.reshape(-1, 3), axis=0) if box.size else np.array([180.0, 140.0, 120.0])
            band, sigma = skin * 1.05 + (20.0 * (xx / max(1, w) - 0.5))[..., None], 2.0
        else:  # mask
            folds = 6.0 * np.sin(2 * np.pi * yy / max(4.0, 0.5 * h)) + 10.0 * (xx / max(1, w) - 0.5)
            band, sigma = np.array([170.0, 200.0, 225.0]) + folds[..., None], 1.5
        out[ys, xs] = np.clip(band + rng.normal(0.0, sigma, (h, w, 3)), 0, 255).round().astype(np.uint8)
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


#: Clean photos, nothing covered, whose skin is smoother than LFW's JPEGs show it: denoising and beauty
#: filters (phone pipelines), upscaling (a small photo enlarged), a clean photo compressed hard. None of them is
#: occluded; vision.face_quality's ``flat`` must not call them COVERED (bench/degradation.py checkset).
CLEAN = ("denoised nlm", "denoised nlm strong", "bilateral", "beauty", "median 5", "denoised upscaled 2x",
         "upscaled 2x", "small upscaled", "denoised jpeg q10", "beauty upscaled 2x")


def clean(img: np.ndarray, name: str) -> np.ndarray:
    """One of CLEAN, of an RGB uint8 image (OpenCV's filters; ``opencv-python-headless``)."""
    import cv2

    img = np.ascontiguousarray(img)
    if name == "denoised nlm":
        return cv2.fastNlMeansDenoisingColored(img, None, 10, 10, 7, 21)
    if name == "denoised nlm strong":
        return cv2.fastNlMeansDenoisingColored(img, None, 20, 20, 7, 21)
    if name == "bilateral":
        return cv2.bilateralFilter(img, 9, 75, 75)
    if name == "beauty":  # a skin-smoothing filter: edge-preserving, twice
        return cv2.bilateralFilter(cv2.bilateralFilter(img, 15, 60, 15), 15, 60, 15)
    if name == "median 5":
        return cv2.medianBlur(img, 5)
    if name == "denoised upscaled 2x":
        return cv2.resize(clean(img, "denoised nlm"), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    if name == "upscaled 2x":
        return cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
    if name == "small upscaled":  # a 100-px photo enlarged to 500 px
        small = cv2.resize(img, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    if name == "denoised jpeg q10":
        return degrade(clean(img, "denoised nlm"), "jpeg", 10, None, None)
    if name == "beauty upscaled 2x":
        return cv2.resize(clean(img, "beauty"), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    raise ValueError(name)

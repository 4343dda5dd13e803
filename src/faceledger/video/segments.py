"""Shot cuts (PySceneDetect's ContentDetector), black frames, and SMPTE timecodes.

Both detectors are fed every decoded frame in order (``feed``) and are resumable: their state after a
frame is small (:meth:`ShotDetector.state` / :meth:`BlackFrames.state`).

* Shots: ``ContentDetector`` at its default threshold (27) finds the 3 real cuts of the hamilton clip and no
  false one (FFmpeg's ``scdet`` at its default finds none). A shot's Confidence is the detector's score at
  the cut that opens it, mapped to 50-100 (the first shot, opened by the start of the video: 100).
* Black frames: Rekognition's ``BlackFrame`` filter: a frame is black when at least
  ``MinCoveragePercentage`` % of its pixels have a luma at most ``MaxPixelThreshold`` of the luma range
  (16-235 for LIMITED video, 0-255 for FULL); defaults 0.2 and 99.
* Colour bars, credits, slates and studio logos are not detected (faceledger has no honest detector for
  them): GetSegmentDetection never reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BlackFrames", "ShotDetector", "smpte"]

#: ContentDetector's default threshold and minimum shot length (frames).
SHOT_THRESHOLD = 27.0
SHOT_MIN_FRAMES = 15
#: Frames are scaled to at most this width for shot detection (the detector compares mean HSV
#: differences, which do not need full resolution; 1080p costs 30x less).
SHOT_WIDTH = 320


class ShotDetector:
    """Shot cuts over consecutive frames: ``feed(index, image)`` returns True when ``index`` opens a new
    shot (``score``: the ContentDetector score of that cut)."""

    def __init__(self, fps: float, threshold: float = SHOT_THRESHOLD) -> None:
        from scenedetect import ContentDetector

        self.fps = fps if fps > 0 else 25.0
        self.threshold = threshold
        self._detector = ContentDetector(threshold=threshold, min_scene_len=SHOT_MIN_FRAMES)
        self.last_score = 0.0

    def feed(self, index: int, frame) -> int | None:
        """The frame index of a cut detected with this frame (the first frame of the new shot), or None.
        ``frame``: a :class:`faceledger.video.decode.Frame` (looked at SHOT_WIDTH wide) or an RGB array."""
        from scenedetect.common import FrameTimecode

        rgb = frame.scaled(SHOT_WIDTH) if hasattr(frame, "scaled") else frame
        h, w = rgb.shape[:2]
        if w > SHOT_WIDTH:
            import cv2

            rgb = cv2.resize(rgb, (SHOT_WIDTH, max(2, int(h * SHOT_WIDTH / w))), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        cuts = self._detector.process_frame(FrameTimecode(index, fps=self.fps), bgr)
        score = float(getattr(self._detector, "_frame_score", 0.0) or 0.0)
        if cuts:
            self.last_score = score
            return int(cuts[-1].frame_num)
        return None

    def confidence(self, score: float | None = None) -> float:
        """Rekognition's 50-100 Confidence from a cut's score: 50 at the threshold, 100 at 3x it."""
        s = self.last_score if score is None else score
        return float(min(100.0, 50.0 + 50.0 * max(0.0, s - self.threshold) / (2 * self.threshold)))


@dataclass
class BlackFrames:
    """Runs of black frames (Rekognition's BlackFrame filter). ``feed`` returns a finished run
    ``(first index, last index, first ms, last ms)`` when a black run ends."""

    max_pixel_threshold: float = 0.2
    min_coverage_percentage: float = 99.0
    run: list = field(default_factory=list)  # [first index, last index, first ms, last ms] of the open run

    def is_black(self, rgb: np.ndarray) -> bool:
        luma = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
        # FFmpeg expands limited-range luma (16-235) to 0-255 when it converts to RGB, so Rekognition's
        # "minimum luminance + MaxPixelThreshold x luminance range" is MaxPixelThreshold x 255 here, both ranges
        cutoff = self.max_pixel_threshold * 255.0
        coverage = 100.0 * float(np.count_nonzero(luma <= cutoff)) / luma.size
        return coverage >= self.min_coverage_percentage

    def feed(self, index: int, ms: int, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        if self.is_black(rgb):
            if self.run:
                self.run[1], self.run[3] = index, ms
            else:
                self.run = [index, index, ms, ms]
            return None
        return self.close()

    def close(self) -> tuple[int, int, int, int] | None:
        if not self.run:
            return None
        done, self.run = tuple(self.run), []
        return done  # type: ignore[return-value]


def smpte(frame_index: int, fps: float) -> str:
    """The SMPTE timecode ``HH:MM:SS:FF`` of a frame (non-drop-frame; ``HH:MM:SS;FF`` drop-frame for 29.97
    and 59.94 fps, as Rekognition writes it). Below 0.5 frames a second (a video may state 0.001) a timecode
    has no frame field to count in: ``HH:MM:SS:00`` of the frame's time, ``frame_index / fps`` seconds."""
    if not 0 < fps < float("inf"):
        fps = 25.0
    nominal = int(round(fps))
    if nominal < 1:
        seconds = int(frame_index / fps)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:00"
    drop = abs(fps - nominal * 1000 / 1001) < 0.01 and nominal in (30, 60)
    n = int(frame_index)
    if drop:
        d = 2 if nominal == 30 else 4
        per_10min = nominal * 600 - d * 9
        per_min = nominal * 60 - d
        tens, rest = divmod(n, per_10min)
        n += d * 9 * tens + (d * ((rest - d) // per_min) if rest > d else 0)
    ff = n % nominal
    ss = (n // nominal) % 60
    mm = (n // (nominal * 60)) % 60
    hh = n // (nominal * 3600)
    return f"{hh:02d}:{mm:02d}:{ss:02d}{';' if drop else ':'}{ff:02d}"

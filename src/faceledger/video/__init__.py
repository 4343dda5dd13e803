"""Video: decoding, sampling, shot and black-frame detection, face tracking (pure computation).

Used by the stored-video jobs (:mod:`faceledger.service.video_jobs`) and meant to be reused by a live
reader: :func:`decode.frames` and a live source both give :class:`decode.Frame`; :class:`faces.FacePass`
and :class:`segments.ShotDetector` take frames one at a time; :func:`track.merge_tracklets` merges.
"""

from .decode import Frame, VideoError, VideoInfo, frames, probe
from .faces import FacePass, Sighting
from .segments import BlackFrames, ShotDetector, smpte
from .track import MERGE_SIMILARITY, FaceTracker, Tracklet, merge_tracklets

__all__ = ["BlackFrames", "FacePass", "FaceTracker", "Frame", "MERGE_SIMILARITY", "ShotDetector", "Sighting",
           "Tracklet", "VideoError", "VideoInfo", "frames", "merge_tracklets", "probe", "smpte"]

"""Hostile stored videos, built here with PyAV: limits are held on every decoded frame, not only on what the
header states (a stream that switches to larger frames midway, a header that understates the duration), and
the Get* calls bound their pages and check their tokens whatever the job's state."""

from __future__ import annotations

import fractions
import io
import struct
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")


def _h264(width: int, height: int, n: int, container: str = "h264") -> bytes:
    """A raw H.264 elementary stream of ``n`` black frames (no container, so no stated duration; or in
    ``container``)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for _ in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8),
                                                                   format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _lying_mkv(path: Path, hours: float) -> None:
    """Three frames at 0, ``hours`` and ``hours`` + 40 ms in Matroska, its header's Duration then set to 1 s."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.time_base = fractions.Fraction(1, 1000)
        late = int(hours * 3600 * 1000)
        for pts in (0, late, late + 40):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Segment Info's Duration element: an 8-byte float of milliseconds
    assert at > 0
    data[at + 3:at + 11] = struct.pack(">d", 1000.0)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from faceledger.client import Client
    from faceledger.service import Service, ServiceConfig

    root = tmp_path_factory.mktemp("attack-video")
    bucket = root / "buckets" / "vids"
    bucket.mkdir(parents=True)
    # the header says 64x64; from frame 200 (8 s) the frames are 640x640, over this server's 0.1 MP image limit
    (bucket / "switch.h264").write_bytes(_h264(64, 64, 200) + _h264(640, 640, 5))
    _lying_mkv(bucket / "lying.mkv", hours=7)
    (bucket / "small.h264").write_bytes(_h264(64, 64, 30))
    service = Service(ServiceConfig(root / "data", root / "buckets", max_image_pixels=100_000))
    with Client(service=service) as client:
        yield client, service


def _wait(fetch, timeout=120):
    deadline = time.monotonic() + timeout
    while (out := fetch())["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, out
        time.sleep(0.1)
    return out


def _video(name: str) -> dict:
    return {"S3Object": {"Bucket": "vids", "Name": name}}


def test_a_stream_that_grows_past_the_pixel_limit_midway_fails_after_its_small_frames(setup):
    client, _ = setup
    for start, get, member in ((client.start_segment_detection, client.get_segment_detection, "Segments"),
                               (client.start_face_detection, client.get_face_detection, "Faces"),
                               (client.start_label_detection, client.get_label_detection, "Labels")):
        extra = {"SegmentTypes": ["TECHNICAL_CUE"]} if member == "Segments" else {}
        job = start(Video=_video("switch.h264"), **extra)["JobId"]
        out = _wait(lambda: get(JobId=job))
        assert out["JobStatus"] == "FAILED", out
        assert "640x640 pixels, over the 0.1 megapixel limit" in out["StatusMessage"], out
        assert "header stated 64x64" in out["StatusMessage"]
    # the 200 small frames before it were analysed: black, so one BlackFrames cue of frames 0-199
    assert [s["EndFrameNumber"] for s in get_segments(client, "switch.h264")] == [199]


def get_segments(client, name: str) -> list[dict]:
    job = client.start_segment_detection(Video=_video(name), SegmentTypes=["TECHNICAL_CUE"])["JobId"]
    return _wait(lambda: client.get_segment_detection(JobId=job))["Segments"]


def test_a_header_that_understates_the_duration_does_not_lift_the_six_hour_limit(setup):
    client, _ = setup
    job = client.start_face_detection(Video=_video("lying.mkv"))["JobId"]  # the header says 1 s: accepted
    out = _wait(lambda: client.get_face_detection(JobId=job))
    assert out["JobStatus"] == "FAILED" and "runs past 6 hours" in out["StatusMessage"], out
    assert out["VideoMetadata"]["DurationMillis"] == 1000


def test_pages_hold_at_most_1000_results_and_tokens_are_checked_while_a_job_runs(setup):
    client, service = setup
    job = client.start_segment_detection(Video=_video("small.h264"), SegmentTypes=["SHOT", "TECHNICAL_CUE"])
    done = _wait(lambda: client.get_segment_detection(JobId=job["JobId"], MaxResults=1))
    token = done["NextToken"]
    # another job's token is refused, also while that job is still queued or running
    other = client.start_segment_detection(Video=_video("lying.mkv"), SegmentTypes=["SHOT"])["JobId"]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.get_segment_detection(JobId=other, NextToken=token)
    _wait(lambda: client.get_segment_detection(JobId=other))
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.get_segment_detection(JobId=other, NextToken=token)


def test_concurrent_starts_never_pass_the_job_limit(tmp_path):
    """Eight Starts at once against a limit of 2 (the workers stopped, so every job stays queued): two jobs, six
    LimitExceededException, however the threads interleave with the hashing of the video."""
    from concurrent.futures import ThreadPoolExecutor

    from faceledger.client import Client
    from faceledger.service import Service, ServiceConfig

    bucket = tmp_path / "buckets" / "vids"
    bucket.mkdir(parents=True)
    (bucket / "a.h264").write_bytes(_h264(64, 64, 10) + bytes(4 << 20))  # some MB to hash: a wide window
    service = Service(ServiceConfig(tmp_path / "data", tmp_path / "buckets", video_max_jobs=2))
    service.video_jobs.stop()
    with Client(service=service) as client:
        def start(_):
            try:
                return client.start_segment_detection(Video=_video("a.h264"), SegmentTypes=["SHOT"])["JobId"]
            except client.exceptions.LimitExceededException:
                return None

        with ThreadPoolExecutor(8) as pool:
            started = [j for j in pool.map(start, range(8)) if j]
        assert len(started) == 2
        assert service.store.count_active_video_jobs() == 2


def test_reading_a_face_search_job_is_recorded_under_its_collection(tmp_path):
    """GetFaceSearch names only a JobId: its ledger entry (allowed or refused) carries the job's collection, so
    `audit list --collection` shows who read that collection's video matches."""
    from faceledger.client import Client
    from faceledger.service import RequestContext, Service, ServiceConfig
    from faceledger.service.auth import Policy

    bucket = tmp_path / "buckets" / "vids"
    bucket.mkdir(parents=True)
    (bucket / "a.h264").write_bytes(_h264(64, 64, 5))
    service = Service(ServiceConfig(tmp_path / "data", tmp_path / "buckets"))
    service.video_jobs.stop()  # the job stays queued: only the ledger is looked at
    with Client(service=service) as client:
        client.create_collection(CollectionId="staff")
        job = client.start_face_search(CollectionId="staff", Video=_video("a.h264"))["JobId"]
        client.get_face_search(JobId=job)
        other = Policy.parse({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rekognition:*",
                              "Resource": "arn:aws:rekognition:us-east-1:000000000000:collection/other"}]})
        limited = Client(service=service, context=RequestContext(transport="python", principal="limited",
                                                                 policy=other))
        with pytest.raises(limited.exceptions.AccessDeniedException):
            limited.get_face_search(JobId=job)
        rows = [(r["principal"], r["result"], r["collection_id"]) for r in service.store.ledger_rows()
                if r["operation"] == "GetFaceSearch"]
    assert [(result, cid) for _, result, cid in rows] == [("OK", "staff"), ("AccessDeniedException", "staff")]


def _png(width: int, height: int, rows: int = 1) -> bytes:
    """A black PNG whose header claims ``width`` x ``height`` RGB pixels; its data holds ``rows`` rows of 64 (one:
    a decoder allocates the whole claimed frame before it finds the data short)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes((1 + 3 * 64) * rows))) + chunk(b"IEND", b""))


def claiming_mov(path: Path, side: int = 16000, n: int = 4, real_first: bool = True) -> None:
    """A MOV of PNG frames, its header 64x64: one real 64x64 frame (unless not ``real_first``), then ``n`` frames
    whose PNG header claims ``side`` x ``side`` (768 MB of RGB at 16000) in a file of about a kilobyte."""
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("png", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "rgb24"
        stream.time_base = fractions.Fraction(1, 1000)
        for i, data in enumerate([_png(64, 64, rows=64)] * real_first + [_png(side, side)] * n):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i * 40, i * 40, stream.time_base
            packet.is_keyframe = True
            out.mux(packet)


def peak_mb(code: str) -> tuple[float, str]:
    """(the peak resident memory, in MB, of a fresh Python running ``code``: its VmHWM, which, unlike ru_maxrss,
    does not start from the parent's size at the fork; what it printed)."""
    import subprocess
    import sys

    script = f"{code}\nprint('PEAK', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120).stdout
    assert "PEAK" in out, out
    return int(out.rsplit("PEAK", 1)[1]) / 1024, out  # kB


def test_frames_that_claim_a_huge_size_are_refused_before_the_decoder_allocates_them(setup, tmp_path):
    """A 1 KB video whose PNG frames claim 16000x16000 pixels: the decoder allocated 768 MB a frame (1.5 GB with
    its threads) before the frame reached the per-frame limit; now FFmpeg's max_pixels refuses it first: the job
    FAILS saying so, the frame before it is reported, and decoding it stays near the interpreter's own size."""
    client, service = setup
    claiming_mov(Path(service.config.buckets_dir) / "vids" / "claims.mov")
    job = client.start_segment_detection(Video=_video("claims.mov"), SegmentTypes=["TECHNICAL_CUE"])["JobId"]
    out = _wait(lambda: client.get_segment_detection(JobId=job))
    assert out["JobStatus"] == "FAILED", out
    assert "refused by the decoder" in out["StatusMessage"] and "0.1 megapixel limit" in out["StatusMessage"], out
    assert [s["EndFrameNumber"] for s in out["Segments"]] == [0]  # the one real frame, black
    claiming_mov(tmp_path / "claims.mov")
    peak, said = peak_mb(f"from faceledger.video import frames, VideoError\ntry:\n"
                         f"    print(len(list(frames({str(tmp_path / 'claims.mov')!r}, max_pixels=36_000_000))))\n"
                         f"except VideoError as exc:\n    print(exc.message)")
    assert "36 megapixel limit" in said, said
    assert peak < 400, (peak, said)  # unguarded: about 1,500 MB
    # its first frame too, which FFmpeg decodes to probe the stream: at Start (in the request) and in the job
    claiming_mov(Path(service.config.buckets_dir) / "vids" / "claims-first.mov", real_first=False)
    job = client.start_face_detection(Video=_video("claims-first.mov"))["JobId"]
    out = _wait(lambda: client.get_face_detection(JobId=job))
    assert out["JobStatus"] == "FAILED" and "0.1 megapixel limit" in out["StatusMessage"], out
    claiming_mov(tmp_path / "first.mov", real_first=False)
    peak, said = peak_mb(f"from faceledger.video import probe, VideoError\ntry:\n"
                         f"    print(probe({str(tmp_path / 'first.mov')!r}, max_pixels=36_000_000))\n"
                         f"except VideoError as exc:\n    print(exc.message)")
    assert "36 megapixel limit" in said, said
    assert peak < 400, (peak, said)  # unguarded: about 800 MB


@pytest.mark.parametrize("name,text,kind", [
    ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n../../outside/o.mp4\n#EXT-X-ENDLIST\n",
     "an HLS playlist"),
    ("list.mp4", "ffconcat version 1.0\nfile link/o.mp4\n", "an ffconcat list"),
])
def test_a_playlist_in_a_bucket_never_reads_the_files_it_names(setup, name, text, kind):
    """An object that is an HLS playlist or an ffconcat list names other files: FFmpeg followed them, out of the
    bucket by '..' or through a symbolic link, and the job reported the outside video's frames. Now a stored video
    is one file read with no protocol allowed: the job FAILS naming what the object is."""
    client, service = setup
    buckets = Path(service.config.buckets_dir)
    outside = buckets.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "o.mp4").write_bytes(_h264(64, 64, 5, container="mp4"))
    if not (buckets / "vids" / "link").exists():
        (buckets / "vids" / "link").symlink_to(outside)
    (buckets / "vids" / name).write_text(text)
    for start, get, extra in ((client.start_face_detection, client.get_face_detection, {}),
                              (client.start_segment_detection, client.get_segment_detection, {"SegmentTypes": ["SHOT"]})):
        job = start(Video=_video(name), **extra)["JobId"]
        out = _wait(lambda: get(JobId=job))
        assert out["JobStatus"] == "FAILED", out
        assert f"the file is {kind}, which names other files" in out["StatusMessage"], out
        assert "VideoMetadata" not in out


def test_a_video_that_grows_while_its_job_reads_it_fails_the_job(setup, monkeypatch):
    """A raw H.264 stream of 250 frames, appended to (250 x 20 more) while its job reads it: the job read on and
    SUCCEEDED with 5,250 frames of segments, not those of the 250-frame video whose SHA-256 it recorded at Start.
    The open file is now checked against its size and time at Start as it is read: the job FAILS saying so."""
    client, service = setup
    path = Path(service.config.buckets_dir) / "vids" / "grows.h264"
    more = _h264(64, 64, 250) * 20
    path.write_bytes(_h264(64, 64, 250))
    runner, calls = service.video_jobs, []
    check = runner.check

    def check_and_grow() -> None:  # called by the job before each frame it analyses
        calls.append(1)
        if len(calls) == 10:
            with open(path, "ab") as f:
                f.write(more)
        check()

    monkeypatch.setattr(runner, "check", check_and_grow)
    job = client.start_segment_detection(Video=_video("grows.h264"), SegmentTypes=["TECHNICAL_CUE"])["JobId"]
    out = _wait(lambda: client.get_segment_detection(JobId=job))
    assert out["JobStatus"] == "FAILED" and "The video was changed while it was read" in out["StatusMessage"], out
    assert all(s["EndFrameNumber"] < 250 for s in out["Segments"])
    from faceledger.video import VideoError
    from faceledger.video.decode import file_identity, frames

    path.write_bytes(_h264(64, 64, 250))  # the same, through frames() itself
    read = frames(path, expect=file_identity(path))
    next(read)
    with open(path, "ab") as f:
        f.write(more)
    with pytest.raises(VideoError, match="changed while it was read"):
        list(read)


def _clip(levels: list[int], rate, container: str = "matroska", pts: list[int] | None = None) -> bytes:
    """Motion-JPEG frames of these grey levels at ``rate`` frames a second in ``container``; ``pts``: their
    timestamps (ms) rewritten as given, in decoding order (the dts stay in order)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream("mjpeg", rate=rate)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuvj420p"
        if pts is not None:
            stream.time_base = fractions.Fraction(1, 1000)
        packets = []
        for level in levels:
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), level, np.uint8), format="rgb24")
            packets += list(stream.encode(frame))
        packets += list(stream.encode())
        for i, packet in enumerate(packets):
            if pts is not None:
                packet.time_base, packet.pts, packet.dts = stream.time_base, pts[i], i - len(packets)
            out.mux(packet)
    return buf.getvalue()


def test_timestamps_that_go_back_and_a_rate_under_one_frame_a_second_give_sane_segments(setup):
    """Frames whose timestamps go back (0, 5 s, 1 s, 6 s, 2 s, 7 s) gave segments that end before they start;
    a container stating 0.001 frames a second failed its job with "Internal error ... (ZeroDivisionError)" (its
    SMPTE timecodes divided by a rate rounded to 0). Now a timestamp is never before the previous frame's (the
    decoder gives frames in presentation order) and a timecode under 0.5 frames a second is HH:MM:SS:00."""
    import re

    client, service = setup
    bucket = Path(service.config.buckets_dir) / "vids"
    (bucket / "back.mkv").write_bytes(_clip([200, 200, 200, 0, 0, 200], 25, pts=[0, 5000, 1000, 6000, 2000, 7000]))
    (bucket / "slow.mkv").write_bytes(_clip([0, 0, 200], fractions.Fraction(1, 1000)))
    for name in ("back.mkv", "slow.mkv"):
        job = client.start_segment_detection(Video=_video(name), SegmentTypes=["SHOT", "TECHNICAL_CUE"])["JobId"]
        out = _wait(lambda: client.get_segment_detection(JobId=job))
        assert out["JobStatus"] == "SUCCEEDED", out
        assert out["Segments"], out
        for s in out["Segments"]:
            assert s["StartFrameNumber"] <= s["EndFrameNumber"] and s["DurationFrames"] >= 1, s
            assert s["StartTimestampMillis"] <= s["EndTimestampMillis"] and s["DurationMillis"] >= 0, s
            for key in ("StartTimecodeSMPTE", "EndTimecodeSMPTE", "DurationSMPTE"):
                assert re.fullmatch(r"\d\d:\d\d:\d\d[:;]\d\d", s[key]), s
    slow = [s for s in out["Segments"] if s["Type"] == "TECHNICAL_CUE"]
    assert [(s["StartTimecodeSMPTE"], s["EndTimecodeSMPTE"]) for s in slow] == [("00:00:00:00", "00:33:20:00")]


def test_a_video_rewritten_with_its_size_and_time_kept_is_not_analysed_as_the_one_hashed(tmp_path):
    """Between Start (which hashed the video) and the job's run, the object is rewritten with another video of the
    same size and its modification time set back (``touch -r``): the job analysed the other video, the ledger
    naming the first one's SHA-256. The inode and status-change time are now kept too (neither can be set back):
    the job FAILS saying the video changed."""
    import os

    from faceledger.client import Client
    from faceledger.service import Service, ServiceConfig

    bucket = tmp_path / "buckets" / "vids"
    bucket.mkdir(parents=True)
    first, other = _h264(64, 64, 10), _h264(64, 64, 30)
    size = max(len(first), len(other)) + 16
    path = bucket / "v.h264"
    path.write_bytes(first + bytes(size - len(first)))  # trailing zero bytes: nothing to a raw H.264 stream
    config = ServiceConfig(tmp_path / "data", tmp_path / "buckets")
    queued = Service(config)
    queued.video_jobs.stop()  # the job stays queued
    with Client(service=queued) as client:
        job = client.start_segment_detection(Video=_video("v.h264"), SegmentTypes=["TECHNICAL_CUE"])["JobId"]
    before = path.stat()
    with open(path, "r+b") as f:  # in place: the same inode
        f.write(other + bytes(size - len(other)))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    running = Service(config)
    running.video_jobs.start()  # as a server does: it takes the queued job
    with Client(service=running) as client:
        out = _wait(lambda: client.get_segment_detection(JobId=job))
    assert out["JobStatus"] == "FAILED" and "changed or replaced after the job started" in out["StatusMessage"], out


def _flicker(n: int, fps: int = 1000) -> bytes:
    """``n`` 16x16 frames at ``fps`` in Matroska, white and black in turn (about 20 bytes a frame)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 0 if i % 2 else 255, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def test_a_thousand_frames_a_second_of_flicker_costs_no_more_than_sixty(setup, monkeypatch):
    """Segment detection analysed every frame a container states: 1,000 frames a second of 16x16 flicker (60,000
    frames in 1.2 MB) took 90 s of CPU and 116 MB for its 30,000 black cues; 6 hours of it would take about 9 hours
    and 40 GB. Now at most about 67 frames a second are analysed (every frame of a 60 fps video still is), and a
    job past MAX_SEGMENTS segments FAILS keeping the first ones."""
    from faceledger.service import video_jobs

    client, service = setup
    (Path(service.config.buckets_dir) / "vids" / "flicker.mkv").write_bytes(_flicker(2000))
    monkeypatch.setattr(video_jobs, "MAX_SEGMENTS", 20)
    job = client.start_segment_detection(Video=_video("flicker.mkv"), SegmentTypes=["TECHNICAL_CUE"])["JobId"]
    out = _wait(lambda: client.get_segment_detection(JobId=job))
    assert out["JobStatus"] == "FAILED" and "more than 20 segments" in out["StatusMessage"], out
    assert 18 <= len(out["Segments"]) <= 22, out["Segments"]
    monkeypatch.setattr(video_jobs, "MAX_SEGMENTS", 50_000)
    job = client.start_segment_detection(Video=_video("flicker.mkv"), SegmentTypes=["SHOT", "TECHNICAL_CUE"])["JobId"]
    out = _wait(lambda: client.get_segment_detection(JobId=job))
    assert out["JobStatus"] == "SUCCEEDED", out
    import json

    end = [json.loads(e["detail"]) for e in service.store.ledger_rows()
           if job in e["detail"] and e["result"] == "JOB_SUCCEEDED"]
    assert len(end) == 1 and end[0]["Search"]["FramesAnalysed"] <= 2 * 67 + 1, end  # 2 s of video, not 2,000
    (Path(service.config.buckets_dir) / "vids" / "sixty.mkv").write_bytes(_flicker(120, fps=60))
    job = client.start_segment_detection(Video=_video("sixty.mkv"), SegmentTypes=["TECHNICAL_CUE"])["JobId"]
    out = _wait(lambda: client.get_segment_detection(JobId=job))
    assert len(out["Segments"]) == 60  # every black frame of a 60 fps video, one cue each


def test_face_search_feeds_its_shot_detector_no_more_than_sixty_frames_a_second(setup, monkeypatch):
    """StartFaceSearch cuts tracklets at shot cuts: its shot detector was fed every frame a container states (the
    same 1.5 ms of CPU a frame of 1,000 fps flicker as segment detection); it now sees at most about 67 a second."""
    from faceledger.service import video_jobs

    client, service = setup
    fed = []

    class Counting(video_jobs.ShotDetector):
        def feed(self, index, frame):
            fed.append(index)
            return super().feed(index, frame)

    monkeypatch.setattr(video_jobs, "ShotDetector", Counting)
    (Path(service.config.buckets_dir) / "vids" / "flicker.mkv").write_bytes(_flicker(2000))
    client.create_collection(CollectionId="flicker")
    job = client.start_face_search(Video=_video("flicker.mkv"), CollectionId="flicker")["JobId"]
    assert _wait(lambda: client.get_face_search(JobId=job))["JobStatus"] == "SUCCEEDED"
    assert 100 <= len(fed) <= 2 * 67 + 1, len(fed)  # 2 s of video, not 2,000 frames

"""A loopback RTSP camera for the stream-processor tests and bench/streams.py: GStreamer's RTSP server
playing an MP4 (H.264) file in real time, from the start for each client, until it ends.

Run by Debian's ``/usr/bin/python3`` (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good and
-bad; ``.ci/run`` installs them), not the project's venv::

    /usr/bin/python3 tests/rtsp_source.py FILE PORT [MOUNT]   # serves rtsp://127.0.0.1:PORT/MOUNT (default: cam)

It prints ``ready`` once it listens. Stop it with SIGTERM (or SIGKILL: a camera that dies); SIGSTOP freezes it.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    path, port = sys.argv[1], sys.argv[2]
    mount = sys.argv[3] if len(sys.argv) > 3 else "cam"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! identity sync=true '
                       "! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(False)  # every client sees the file from its start
    server.get_mount_points().add_factory(f"/{mount}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()

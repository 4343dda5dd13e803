"""A loopback RTMP camera for the stream-processor tests: Debian's nginx with its RTMP module relaying a video file
that this script publishes to it in real time, from its start again each time it ends, until stopped.

    python tests/rtmp_source.py FILE PORT    # serves rtmp://127.0.0.1:PORT/live/cam

Needs ``nginx`` and ``libnginx-mod-rtmp`` (``.ci/run`` installs them when missing; nginx is not started as a
service: this script runs its own, with its configuration, logs and pid file in a temporary folder). The file is
published with PyAV (H.264 copied into FLV, no re-encoding). Prints ``ready`` once nginx listens; stop it with
SIGTERM (nginx stops with it).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def publish(path: str, url: str) -> None:
    """``path``'s video stream to ``url`` at its own frame rate, once."""
    with av.open(path) as src, av.open(url, "w", format="flv") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        start = time.monotonic()
        for packet in src.demux(video):
            if packet.dts is None:
                continue
            due = float(packet.dts * packet.time_base) - (time.monotonic() - start)
            if due > 0:
                time.sleep(due)
            packet.stream = stream
            out.mux(packet)


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="faceledger-rtmp-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(f"load_module {MODULE};\nerror_log {tmp}/error.log info;\npid {tmp}/nginx.pid;\n"
                        f"events {{}}\nrtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n")
        nginx = subprocess.Popen(["nginx", "-e", f"{tmp}/error.log", "-p", tmp, "-c", str(conf), "-g", "daemon off;"])
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if nginx.poll() is not None or time.monotonic() > deadline:
                        sys.exit(f"nginx did not listen on 127.0.0.1:{port}: {(Path(tmp) / 'error.log').read_text()}")
                    time.sleep(0.05)
            print("ready", flush=True)
            while True:
                publish(path, f"rtmp://127.0.0.1:{port}/live/cam")
        finally:
            nginx.terminate()
            nginx.wait(5)


if __name__ == "__main__":
    main()

"""Live video streams: source readers, the newest-frame-only processor loop, Kinesis face-search records and sinks.

Pure computation and threads: nothing here knows about collections, keys or the ledger. The service layer
(:mod:`faceledger.service.streams`) gives a :class:`~faceledger.streams.processor.LiveProcessor` a function that
analyses one frame, and gets back counters and status.
"""

from .processor import LiveProcessor, ProcessorStats
from .records import frame_record
from .sinks import JsonLinesSink, S3Sink, Sink, WebhookSink
from .source import SourceError, check_source_url, open_source

__all__ = ["LiveProcessor", "ProcessorStats", "frame_record", "JsonLinesSink", "S3Sink", "Sink", "WebhookSink",
           "SourceError", "check_source_url", "open_source"]

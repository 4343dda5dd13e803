"""The service layer: one function per Rekognition operation, one dispatch point."""

from .context import RequestContext, ServiceConfig
from .dispatch import Service
from .errors import RekognitionError

__all__ = ["RequestContext", "RekognitionError", "Service", "ServiceConfig"]

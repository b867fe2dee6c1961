"""mediakeep: keep AI-generated media for good.

Safe streaming ingest from provider URLs into object storage you own, recorded in a
database, handed back through signed, public or permanent URLs.
"""

from .errors import MediaKeepError
from .keep import MediaKeep
from .models import AssetInfo, IngestResult, ItemProgress, Page, SweepReport
from .pipeline.sources import BytesSource, FileSource, Source, StreamSource, UrlSource
from .settings import Settings
from .sync import SyncMediaKeep

__all__ = [
    "AssetInfo",
    "BytesSource",
    "FileSource",
    "IngestResult",
    "ItemProgress",
    "MediaKeep",
    "MediaKeepError",
    "Page",
    "Settings",
    "Source",
    "StreamSource",
    "SweepReport",
    "SyncMediaKeep",
    "UrlSource",
]
__version__ = "0.1.0"

"""mediakeep: keep AI-generated media for good.

Safe streaming ingest from provider URLs into object storage you own, recorded in a
database, handed back through signed, public or permanent URLs.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import MediaKeepError
    from .keep import MediaKeep
    from .models import AssetInfo, IngestResult, ItemProgress, Page, SweepReport
    from .pipeline.sources import BytesSource, FileSource, Source, StreamSource, UrlSource
    from .settings import Settings
    from .sync import SyncMediaKeep
else:
    from ._lazy import exports

    # Each name loads its module on first use (see _lazy): importing any part of the
    # package, the CLI or `mediakeep.settings`, does not import the whole library.
    __getattr__, __dir__ = exports(
        __name__,
        {
            "AssetInfo": ".models",
            "BytesSource": ".pipeline.sources",
            "FileSource": ".pipeline.sources",
            "IngestResult": ".models",
            "ItemProgress": ".models",
            "MediaKeep": ".keep",
            "MediaKeepError": ".errors",
            "Page": ".models",
            "Settings": ".settings",
            "Source": ".pipeline.sources",
            "StreamSource": ".pipeline.sources",
            "SweepReport": ".models",
            "SyncMediaKeep": ".sync",
            "UrlSource": ".pipeline.sources",
        },
    )

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

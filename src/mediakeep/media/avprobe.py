"""Video and audio facts via PyAV (FFmpeg's libraries from the wheel), plus a poster
frame. Reads through FFmpeg's own I/O, so a signed URL works as well as a file: only the
parts of the container it needs are fetched."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
from av.container import InputContainer


@dataclass
class AvReport:
    container: str
    duration: float | None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    poster: bytes | None = None  # JPEG/WebP bytes of a representative frame

    def to_dict(self) -> dict[str, object]:
        return {
            "container": self.container,
            "duration": self.duration,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "fps": self.fps,
        }


def probe(location: str, *, poster: bool = True, timeout: float = 30.0) -> AvReport:
    options = {"rw_timeout": str(int(timeout * 1_000_000))}
    container = av.open(location, options=options, timeout=timeout)
    assert isinstance(container, InputContainer)
    with container:
        duration = container.duration / 1_000_000 if container.duration else None
        report = AvReport(container=container.format.name, duration=duration)
        if container.streams.video:
            vs = container.streams.video[0]
            report.video_codec = vs.codec_context.name
            report.width = vs.codec_context.width or None
            report.height = vs.codec_context.height or None
            rate = vs.average_rate or vs.base_rate
            report.fps = float(rate) if rate else None
            if report.duration is None and vs.duration and vs.time_base:
                report.duration = float(vs.duration * vs.time_base)
        if container.streams.audio:
            report.audio_codec = container.streams.audio[0].codec_context.name
            if report.duration is None:
                a = container.streams.audio[0]
                if a.duration and a.time_base:
                    report.duration = float(a.duration * a.time_base)
        if poster and container.streams.video:
            report.poster = _poster(container)
    return report


def _poster(container: InputContainer) -> bytes | None:
    stream = container.streams.video[0]
    stream.codec_context.skip_frame = "NONKEY"
    for frame in container.decode(stream):
        img = frame.to_image()  # type: ignore[no-untyped-call]
        buf = io.BytesIO()
        img.save(buf, "WEBP", quality=80)
        return buf.getvalue()
    return None

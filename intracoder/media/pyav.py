"""The PyAV pieces video.py is built from: pixel-format conversion with accurate rounding,
and the source's audio carried into an output on the video's clock."""

from __future__ import annotations

from pathlib import Path

import av

# swscale's default (fast) conversions round by truncation and interpolate chroma crudely:
# a decode/encode round trip then darkens every frame by 1-2 levels and tints it green
# (measured on the bundled portraits: PyAV's plain to_ndarray and cv2.VideoCapture both
# have that bias), and a convert is one such generation. Accurate rounding with full chroma
# interpolation removes it (mean error < 0.1 level) for about 20 ms more per 1080p frame.
SWS_DECODE = "bilinear+accurate_rnd+full_chroma_int"
SWS_ENCODE = "bicubic+accurate_rnd"
# Audio codecs the MP4/MOV muxer takes as they are; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3"}
# FFmpeg's default layout per channel count (more channels than 5.1 are folded to stereo).
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1"}


def reason(exc: BaseException) -> str:
    """FFmpeg's message for an error, on one line, without PyAV's errno prefix."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


class Converter:
    """Frames of any pixel format to ``pix_fmt`` through a scale filter with ``flags``; the
    graph is rebuilt when the input's size or format changes mid-stream."""

    def __init__(self, pix_fmt: str, flags: str):
        self.pix_fmt, self.flags = pix_fmt, flags
        self._graph = None
        self._key = None

    def _build(self, frame: av.VideoFrame) -> None:
        graph = av.filter.Graph()
        src = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                               time_base=frame.time_base)
        scale = graph.add("scale", f"flags={self.flags}")
        fmt = graph.add("format", self.pix_fmt)
        sink = graph.add("buffersink")
        src.link_to(scale)
        scale.link_to(fmt)
        fmt.link_to(sink)
        graph.configure()
        self._graph = graph
        self._key = (frame.width, frame.height, frame.format.name)

    def __call__(self, frame: av.VideoFrame):
        """The converted frame (an ndarray for packed RGB formats, else a VideoFrame)."""
        if (frame.width, frame.height, frame.format.name) != self._key:
            self._build(frame)
        self._graph.push(frame)
        out = self._graph.pull()
        out.pts, out.time_base = frame.pts, frame.time_base
        if self.pix_fmt in ("bgr24", "rgb24"):
            return out.to_ndarray()
        return out


class AudioCopy:
    """The first audio track of a file, muxed into an open output as the video is written.

    Packets are copied when the container takes the codec, else decoded and re-encoded to
    AAC. ``mux_until(t, offset)`` writes the audio up to source time ``t`` shifted by
    ``offset`` seconds, so video and audio go into the file interleaved and keep the
    relation they had in the source."""

    def __init__(self, source, out_stream, copy: bool, src_stream):
        self._source, self._out, self._copy, self._src = source, out_stream, copy, src_stream
        self._packets = self._stream_packets()
        self._pending = None
        self._container = None
        self.offset, self.stop = 0.0, float("inf")

    @classmethod
    def open(cls, path: Path, output, fmt: str) -> "AudioCopy | None":
        source = av.open(str(path), "r")
        if not source.streams.audio:
            source.close()
            return None
        src = source.streams.audio[0]
        codec = src.codec_context.name
        copy = fmt == "matroska" or codec in MP4_AUDIO or (
            fmt == "mov" and codec.startswith("pcm_"))
        if copy:
            stream = output.add_stream_from_template(src)
        else:
            stream = output.add_stream("aac", rate=src.codec_context.sample_rate)
            # By channel count: a source's layout may be "N channels" with no order, which
            # the AAC encoder refuses.
            stream.layout = _LAYOUTS.get(src.codec_context.channels, "stereo")
            stream.bit_rate = 192_000
        audio = cls(source, stream, copy, src)
        audio._container = output
        return audio

    def _stream_packets(self):
        """(source time in seconds, packet ready to mux) in order, from ``self.offset`` on
        (read when the first packet is asked for, after the first video frame)."""
        if self._copy:
            for packet in self._source.demux(self._src):
                if packet.size and packet.pts is not None:
                    at = float(packet.pts * packet.time_base)
                    if at >= self.offset - 1e-6:
                        yield at, packet
            return
        resampler = av.AudioResampler(format="fltp", layout=self._out.layout.name,
                                      rate=self._out.rate, frame_size=1024)  # AAC's frame
        for frame in self._source.decode(self._src):
            at = float(frame.time or 0.0)
            if at < self.offset - 1e-6:
                continue
            if at >= self.stop:
                break
            frame.pts = None  # numbered from the first kept sample: time 0 is the offset
            for part in resampler.resample(frame):
                for packet in self._out.encode(part):
                    yield at, packet
        for packet in [p for part in resampler.resample(None) for p in self._out.encode(part)]:
            yield float("inf"), packet
        for packet in self._out.encode(None):
            yield float("inf"), packet

    def mux_until(self, until: float, offset: float, last: bool = False) -> None:
        """Mux what is due by source time ``until``; ``last``: everything up to it, with
        the encoder's delayed packets when re-encoding."""
        self.offset = offset
        if last:
            self.stop = until
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            at, packet = self._pending
            if (at > until and not last) or (last and self._copy and at >= until):
                return
            self._pending = None
            if self._copy:
                shift = round(offset / packet.time_base)
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = self._out
            self._container.mux(packet)

    def close(self) -> None:
        self._packets.close()
        self._source.close()

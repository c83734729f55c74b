"""Frame sources and an MP4 writer built on PyAV (FFmpeg's libraries in-process: no ``ffmpeg`` executable, no frames
written to disk).

Reading. :class:`FrameReader` (or :func:`read_frames`) yields :class:`Frame` tuples ``(index, time_s, rgb)`` with
``rgb`` uint8 RGB (H, W, 3) from any of

* a video file (anything FFmpeg demuxes: mp4, mov, mkv, avi, webm, ts, ...), rotated upright when the container
  carries a display rotation (as the ``ffmpeg`` command the original used does);
* a single image (one frame at t = 0);
* a folder of images, in natural order of their file names (``2.jpg`` before ``10.jpg``; zero-padded names sort the
  same either way), given the frame rate ``image_fps`` (default 30); ``index`` is the file's position in that order.

Grey and alpha images become 3-channel RGB (alpha is dropped, as :func:`common.utils.image.load_image`).

Time. ``time_s`` is seconds from the start of the stream (the first frame's presentation time is 0, whatever the
container's start offset). ``start`` / ``end`` are **seconds** on that clock: frames with ``start <= time_s < end``
are yielded (``end`` exclusive; to select frame numbers ``a..b`` of a constant-rate source pass ``a / fps`` and
``(b + 1) / fps``). Frames before ``start`` are decoded but not converted (FFmpeg cannot seek frame-accurately).

Resampling. Without ``fps`` every decoded frame is yielded and ``index`` is its decode position (0-based, counted
from the first frame of the stream even when ``start`` > 0). With ``fps`` the output is the regular grid
``t_k = k / fps``: slot ``k`` shows the frame on screen at ``t_k`` (the last frame whose timestamp is <= ``t_k``,
allowing one tick of the container's time base for timestamp rounding), so frames are dropped when slowing down and
repeated when speeding up; ``index`` is ``k`` and ``time_s`` is ``t_k`` (strictly increasing, so time-stamped
filters see ``dt > 0``). The last frame lasts one frame interval: 30 frames at 30 fps give 15 frames at 15 fps,
24 at 24 fps and 60 at 60 fps.

Damaged files. A truncated or corrupt video yields every frame FFmpeg can decode; packets that fail to decode are
skipped. At the end :attr:`FrameReader.problem` describes what was lost (decode errors, or fewer frames than the
container announced) and the same sentence is logged as a warning, so a long run keeps every frame it processed.
A file that cannot be opened at all (e.g. an MP4 whose recording was interrupted before its index was written)
raises :class:`~common.errors.InputError`.

Writing. :class:`VideoWriter` encodes H.264 (libx264, yuv420p, ``+faststart``) and falls back to MPEG-4 Part 2 with a
warning when the PyAV build has no H.264 encoder; the file is written under a temporary name and renamed on
:meth:`VideoWriter.close`, so an interrupted run never leaves a truncated video under the final name.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from common.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_IMAGE_FPS = 30.0  # frame rate assigned to image folders (the original's render.py workflow extracts at 30)
MAX_CONSECUTIVE_ERRORS = 200  # undecodable packets in a row after which the rest of a file is given up
_PIP_HINT = "install PyAV: pip install av==18.1.0"


class Frame(NamedTuple):
    """One output frame: ``index`` (see the module docstring), ``time_s`` (s), ``rgb`` uint8 (H, W, 3)."""

    index: int
    time_s: float
    rgb: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` knows about a source before decoding it.

    ``num_frames``: frames in the source (video: the container's count, else duration x fps rounded; folder: number
    of image files; image: 1). ``fps``: average frame rate (folders: ``image_fps``). ``width`` / ``height``: px of
    the frames as yielded (after display rotation). ``duration_s``: None when unknown. ``kind``: 'video', 'image'
    or 'folder'. ``exact``: whether ``num_frames`` was read from an index rather than estimated.
    """

    kind: str
    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float | None
    exact: bool


def _import_av() -> Any:
    try:
        import av
    except ImportError as err:
        raise InputError(f"reading or writing videos needs PyAV, which is not installed; {_PIP_HINT}") from err
    return av


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by extension) directly inside ``folder``, in natural order of their names."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))


def source_kind(path: str | Path) -> str:
    """'folder', 'image' or 'video' (anything else is handed to FFmpeg); InputError if ``path`` does not exist."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise InputError(f"input not found: {path} (give a video file, an image, or a folder of images)")
    return "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"


def _read_image_rgb(path: Path) -> np.ndarray | None:
    """uint8 RGB (H, W, 3) or None if the file cannot be decoded or is a truncated JPEG; grey / alpha / 16-bit
    become 8-bit RGB (:func:`common.utils.image.load_image_uint8`)."""
    from common.utils.image import load_image_uint8

    try:
        return load_image_uint8(path)
    except InputError:
        return None


def _open_video(path: Path) -> tuple[Any, Any]:
    av = _import_av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise InputError(f"cannot open video {path}: {err}. The file is not a video FFmpeg can read, or it is "
                         "truncated before its index (an interrupted MP4 recording); re-export or re-download it"
                         ) from err
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream; give a video file, an image, or a folder of images")
    return container, container.streams.video[0]


def _stream_fps(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _rotate_upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, multiples of 90) to an (H, W, 3) image."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _frame_rotation(frame: Any) -> float:
    try:
        return float(frame.rotation or 0.0)
    except (AttributeError, TypeError, ValueError):
        return 0.0


def _video_expected_frames(container: Any, stream: Any) -> tuple[int, float | None, bool]:
    """(frame count, duration s or None, exact?) from the container headers, without decoding."""
    fps = _stream_fps(stream)
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE microseconds
    if stream.frames:
        return int(stream.frames), duration, True
    if duration is not None and fps > 0:
        return int(round(duration * fps)), duration, False
    return 0, duration, False


def probe(path: str | Path, image_fps: float = DEFAULT_IMAGE_FPS) -> VideoInfo:
    """Frame count, fps and frame size of a video, an image or a folder of images (see :class:`VideoInfo`).

    Videos: counts come from the container (exact for MP4/MOV, estimated from the duration for MKV/TS/...); the first
    frame is decoded to learn the display rotation. Raises InputError for a missing or unreadable source.
    """
    path = Path(path)
    kind = source_kind(path)
    if kind == "folder":
        files = list_images(path)
        if not files:
            raise InputError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        first = next((img for img in (_read_image_rgb(f) for f in files[:10]) if img is not None), None)
        if first is None:
            raise InputError(f"cannot read the first images of {path}; are they valid image files?")
        return VideoInfo("folder", len(files), float(image_fps), first.shape[1], first.shape[0],
                         len(files) / image_fps, True)
    if kind == "image":
        from common.utils.image import load_image_uint8

        img = load_image_uint8(path)  # InputError naming the problem (undecodable, truncated JPEG)
        return VideoInfo("image", 1, 0.0, img.shape[1], img.shape[0], None, True)
    container, stream = _open_video(path)
    try:
        count, duration, exact = _video_expected_frames(container, stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        try:
            frame = next(container.decode(stream), None)
        except Exception:  # noqa: BLE001 - a damaged first packet: keep the header values
            frame = None
        if frame is not None and int(round(_frame_rotation(frame) / 90.0)) % 2:
            width, height = height, width
        return VideoInfo("video", count, _stream_fps(stream), width, height, duration, exact)
    finally:
        container.close()


class _Resampler:
    """Sample-and-hold onto the grid ``t_k = k / fps``: slot k takes the last item with ``t <= t_k + tol``."""

    def __init__(self, fps: float, tol: float):
        self.fps, self.tol = fps, tol
        self.k = 0
        self.held: Any = None

    def push(self, t: float, item: Any) -> list[tuple[int, float, Any]]:
        """Feed the next source item (time ``t`` s, increasing); returns the slots it closes, held item attached."""
        out = []
        if self.held is not None:
            while self.k / self.fps < t - self.tol:
                out.append((self.k, self.k / self.fps, self.held))
                self.k += 1
        self.held = item
        return out

    def finish(self, t_end: float) -> list[tuple[int, float, Any]]:
        """Close the slots before ``t_end`` (end of the last item's display) with the held item."""
        out = []
        if self.held is not None:
            while self.k / self.fps < t_end - self.tol:
                out.append((self.k, self.k / self.fps, self.held))
                self.k += 1
        return out


class FrameReader:
    """Iterate over the frames of a video, an image or a folder of images (see the module docstring).

    ``FrameReader(path, fps=None, start=0.0, end=None)``: ``fps`` target rate (None keeps the source's frames),
    ``start`` / ``end`` in seconds (end exclusive, None = to the end). ``info`` is :func:`probe`'s result. After
    iterating, ``num_decoded`` counts source frames decoded and ``problem`` is None or a sentence describing frames
    lost to damage (also logged as a warning). Iterating again starts over.
    """

    def __init__(self, path: str | Path, fps: float | None = None, start: float = 0.0, end: float | None = None,
                 image_fps: float = DEFAULT_IMAGE_FPS, autorotate: bool = True):
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise InputError(f"fps must be a positive number, got {fps}")
        if not math.isfinite(start) or start < 0:
            raise InputError(f"start must be >= 0 seconds, got {start}")
        if end is not None and not end > start:
            raise InputError(f"end ({end} s) must be after start ({start} s)")
        if not image_fps > 0:
            raise InputError(f"image_fps must be positive, got {image_fps}")
        self.path = Path(path)
        self.fps, self.start, self.end = fps, float(start), end
        self.image_fps = float(image_fps)
        self.autorotate = autorotate
        self.info = probe(self.path, image_fps=self.image_fps)
        self.num_decoded = 0
        self.problem: str | None = None

    def estimated_length(self) -> int:
        """Approximate number of frames the iteration yields (for progress bars)."""
        info = self.info
        if info.kind == "image":
            return 1
        src_fps = info.fps or DEFAULT_IMAGE_FPS
        duration = info.duration_s if info.duration_s else info.num_frames / src_fps
        stop = duration if self.end is None else min(self.end, duration)
        rate = self.fps or src_fps
        return max(0, int(math.ceil((stop - self.start) * rate - 1e-6)))

    def __iter__(self) -> Iterator[Frame]:
        self.num_decoded, self.problem = 0, None
        if self.info.kind == "image":
            img = _read_image_rgb(self.path)
            if img is None:
                raise InputError(f"cannot read image {self.path}")
            self.num_decoded = 1
            yield Frame(0, 0.0, img)
            return
        if self.info.kind == "folder":
            yield from self._iter_folder()
        else:
            yield from self._iter_video()
        if self.problem:
            log.warning(self.problem)

    # -- time filtering and resampling shared by folders and videos ---------------------------------------------
    def _select(self, items: Iterator[tuple[float, Any]], tol: float, last_duration: float) -> Iterator[
            tuple[int, float, Any]]:
        """(time, item) in decode order -> (index, time_s, item) after start/end and resampling.

        ``last_duration`` is how long the last item stays on screen (s). Duplicated slots carry the same item.
        """
        end = math.inf if self.end is None else self.end
        if self.fps is None:
            for i, (t, item) in enumerate(items):
                if t >= end - tol:
                    return
                if t >= self.start - tol:
                    yield i, t, item
            return
        res = _Resampler(self.fps, tol)
        t_last = None
        for t, item in items:
            t_last = t
            for k, tk, held in res.push(t, item):
                if tk >= end - 1e-9:
                    return
                if tk >= self.start - 1e-9:
                    yield k, tk, held
        if t_last is not None:
            for k, tk, held in res.finish(t_last + last_duration):
                if tk >= end - 1e-9:
                    return
                if tk >= self.start - 1e-9:
                    yield k, tk, held

    def _iter_folder(self) -> Iterator[Frame]:
        files = list_images(self.path)
        bad: list[str] = []

        def items() -> Iterator[tuple[float, Path]]:
            for i, f in enumerate(files):
                yield i / self.image_fps, f

        last_img: tuple[Path, np.ndarray] | None = None
        for k, t, f in self._select(items(), 1e-6, 1.0 / self.image_fps):
            if last_img is not None and last_img[0] == f:
                yield Frame(k, t, last_img[1].copy())  # a repeated slot: a copy, callers may draw on frames
                continue
            img = _read_image_rgb(f)
            self.num_decoded += 1
            if img is None:
                bad.append(f.name)
                continue
            last_img = (f, img)
            yield Frame(k, t, img)
        if bad:
            self.problem = (f"{self.path}: skipped {len(bad)} unreadable image(s) ({', '.join(bad[:5])}"
                            f"{', ...' if len(bad) > 5 else ''}); {self.num_decoded - len(bad)} read")

    def _iter_video(self) -> Iterator[Frame]:
        av = _import_av()
        container, stream = _open_video(self.path)
        try:
            stream.thread_type = "AUTO"
            src_fps = _stream_fps(stream) or 30.0
            expected, _, exact = _video_expected_frames(container, stream)
            t0 = stream.start_time
            tb = stream.time_base
            errors: list[str] = []
            state = {"done": False}

            def items() -> Iterator[tuple[float, Any]]:
                n = run = 0
                try:
                    for packet in container.demux(stream):
                        try:
                            frames = stream.decode(packet)
                        except av.FFmpegError as err:  # a damaged packet: skip it, keep going
                            errors.append(str(err))
                            run += 1
                            if run > MAX_CONSECUTIVE_ERRORS:  # nothing decodable any more: stop reading
                                break
                            continue
                        run = 0
                        for frame in frames:
                            if frame.pts is not None and tb is not None:
                                t = float((frame.pts - (t0 or 0)) * tb)
                            else:
                                t = n / src_fps
                            n += 1
                            self.num_decoded = n
                            yield t, frame
                except av.FFmpegError as err:  # the demuxer gave up (damaged container)
                    errors.append(str(err))
                state["done"] = True

            cache: tuple[Any, np.ndarray] | None = None
            # timestamps are rounded to the time base: tolerate one tick (at most a tenth of a frame interval)
            tol = min(float(tb) if tb else 1e-6, 0.1 / src_fps)
            for k, t, frame in self._select(items(), tol, 1.0 / src_fps):
                if cache is not None and cache[0] is frame:
                    yield Frame(k, t, cache[1].copy())
                    continue
                rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
                if self.autorotate:
                    rgb = _rotate_upright(rgb, _frame_rotation(frame))
                cache = (frame, rgb)
                yield Frame(k, t, rgb)
            if state["done"]:
                self.problem = self._damage_report(errors, expected, exact)
        finally:
            container.close()

    def _damage_report(self, errors: list[str], expected: int, exact: bool) -> str | None:
        n = self.num_decoded
        missing = expected - n if expected else 0
        short = missing > (1 if exact else max(2, int(0.03 * expected)))
        if not errors and not short:
            return None
        parts = [f"video {self.path} is damaged or truncated: decoded {n} frame(s)"]
        if expected:
            parts.append(f"of {'' if exact else '~'}{expected} announced by the container")
        if errors:
            parts.append(f"({len(errors)} packet(s) failed to decode, last error: {errors[-1]})")
        return " ".join(parts) + "; the frames that could be decoded were processed"


def read_frames(path: str | Path, fps: float | None = None, start: float = 0.0, end: float | None = None,
                image_fps: float = DEFAULT_IMAGE_FPS) -> Iterator[Frame]:
    """Shorthand for ``iter(FrameReader(path, fps, start, end, image_fps))``: yields ``(index, time_s, rgb)``."""
    return iter(FrameReader(path, fps=fps, start=start, end=end, image_fps=image_fps))


def _pick_encoder(av: Any, preferred: str) -> str:
    """``preferred`` if this PyAV build can encode it, else 'mpeg4' (with a warning saying so)."""
    for name in (preferred, "mpeg4"):
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - UnknownCodecError / EncoderNotFoundError depending on the version
            continue
        if name != preferred:
            log.warning("video encoder %s is not available in this PyAV/FFmpeg build; writing MPEG-4 Part 2 "
                        "(%s) instead (larger files, less compatible). Install a PyAV wheel with libx264 "
                        "(pip install av==18.1.0) for H.264", preferred, name)
        return name
    raise InputError(f"this PyAV build can encode neither {preferred} nor mpeg4; {_PIP_HINT}")


class VideoWriter:
    """Encode uint8 RGB (H, W, 3) frames into a video file at a constant ``fps``; use as a context manager.

    ``size`` is (width, height) in px of the frames given to :meth:`write`. H.264 with yuv420p needs even sizes: an
    odd width/height is padded by one replicated edge pixel (the stored video is then 1 px larger). ``crf`` is
    libx264's quality (0 lossless .. 51 worst, 18 visually lossless); ``preset`` trades speed for size.
    The container comes from the suffix of ``path`` (.mp4 recommended). Nothing exists under ``path`` before
    :meth:`close` succeeds; leaving the ``with`` block by an exception discards the file.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], codec: str = "libx264", crf: int = 18,
                 preset: str = "veryfast"):
        av = _import_av()
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"output fps must be positive, got {fps}")
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise InputError(f"video size must be positive (width, height), got {size}")
        self.path = Path(path)
        self.size = (width, height)
        self.fps = fps
        self.count = 0
        self.codec = _pick_encoder(av, codec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{self.path.suffix or '.mp4'}",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        options = {"movflags": "+faststart"} if self.path.suffix.lower() in {".mp4", ".mov", ".m4v", ""} else {}
        self._container = None
        try:
            self._container = av.open(str(self._tmp), "w", options=options)
            rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001; MPEG-4 needs denominators < 2^16
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = 1 / rate
            if self.codec == "libx264":
                self._stream.options = {"crf": str(crf), "preset": preset}
            else:
                self._stream.bit_rate = max(2_000_000, int(width * height * fps * 0.2))
        except Exception:
            if self._container is not None:
                self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._closed = False

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: uint8 RGB (height, width, 3) matching ``size``."""
        av = _import_av()
        if self._closed:
            raise RuntimeError(f"VideoWriter for {self.path} is closed")
        width, height = self.size
        if rgb.shape != (height, width, 3):
            raise InputError(f"frame of shape {rgb.shape} does not match the video size {width}x{height} "
                             f"(expected ({height}, {width}, 3))")
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if width % 2 or height % 2:
            rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.count
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.count += 1

    def close(self) -> Path:
        """Flush the encoder, finish the file and move it to ``path``; returns ``path``."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard the partial file (nothing is left under ``path``)."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - already broken; the temp file goes anyway
                pass
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

"""Frame sources and the video writer (common/utils/video.py) on small synthetic videos made with PyAV."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.errors import InputError

av = pytest.importorskip("av")

from common.utils.video import FrameReader, VideoWriter, probe, read_frames  # noqa: E402

W, H, N, FPS = 160, 120, 30, 30


def synthetic_frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame i: a red square moving right 3 px/frame and a yellow one moving left 2 px/frame on grey."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[20:60, 10 + 3 * i: 50 + 3 * i] = (255, 0, 0)
    img[64:104, 100 - 2 * i: 140 - 2 * i] = (255, 220, 0)
    return img


def red_x(rgb: np.ndarray) -> float:
    """Column centroid of the red square (independent of how the frame was produced)."""
    red = (rgb[:, :, 0] > 180) & (rgb[:, :, 1] < 90) & (rgb[:, :, 2] < 90)
    return float(np.nonzero(red)[1].mean())


def encode(path: Path, n: int = N, fps: int = FPS, options: dict | None = None, rotation: int = 0) -> Path:
    """Write a test video directly with PyAV (not through VideoWriter)."""
    container = av.open(str(path), "w", options=options or {})
    stream = container.add_stream("libx264", rate=Fraction(fps))
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.options = {"crf": "4", "preset": "ultrafast"}
    if rotation:
        stream.set_display_rotation(rotation)
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(synthetic_frame(i), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(tmp_path_factory.mktemp("video") / "squares.mp4", options={"movflags": "+faststart"})


def test_probe_and_read_back(video: Path) -> None:
    info = probe(video)
    assert (info.kind, info.num_frames, info.fps, info.width, info.height, info.exact) == ("video", N, 30.0, W, H, True)
    assert info.duration_s == pytest.approx(1.0)
    frames = list(read_frames(video))
    assert [f.index for f in frames] == list(range(N))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(N) / FPS, atol=1e-6)
    for f in frames:
        assert f.rgb.dtype == np.uint8 and f.rgb.shape == (H, W, 3)
        assert np.abs(f.rgb.astype(np.int16) - synthetic_frame(f.index)).mean() < 3.0
        assert red_x(f.rgb) == pytest.approx(29.5 + 3 * f.index, abs=0.5)  # the right frame, in order


@pytest.mark.parametrize("fps, count", [(15, 15), (24, 24), (60, 60), (7.5, 8)])
def test_fps_resampling(video: Path, fps: float, count: int) -> None:
    frames = list(FrameReader(video, fps=fps))
    assert [f.index for f in frames] == list(range(count))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(count) / fps, atol=1e-9)
    for f in frames:  # slot k shows the source frame on screen at k / fps
        src = int(np.floor(f.index * FPS / fps + 1e-6))
        assert red_x(f.rgb) == pytest.approx(29.5 + 3 * src, abs=0.5)
    if fps > FPS:  # repeated frames are separate arrays (callers draw on them)
        assert not np.shares_memory(frames[0].rgb, frames[1].rgb)
        np.testing.assert_array_equal(frames[0].rgb, frames[1].rgb)


def test_start_end_seconds(video: Path) -> None:
    frames = list(FrameReader(video, start=0.2, end=0.5))
    assert [f.index for f in frames] == list(range(6, 15))  # index stays the source frame number
    assert red_x(frames[0].rgb) == pytest.approx(29.5 + 18, abs=0.5)
    assert [f.index for f in FrameReader(video, fps=10, start=0.2, end=0.5)] == [2, 3, 4]
    assert len(list(FrameReader(video, start=0.9))) == 3
    with pytest.raises(InputError, match="end"):
        FrameReader(video, start=0.5, end=0.5)


def test_folder_and_single_images(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    names = ["f1.png", "f2.png", "f10.png", "f11.png"]  # natural order, not lexicographic (f10 < f2)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), synthetic_frame(i)[:, :, ::-1])
    grey = np.tile(np.arange(W, dtype=np.uint8), (H, 1))
    cv2.imwrite(str(folder / "f12.png"), grey)
    rgba = np.dstack([synthetic_frame(5)[:, :, ::-1], np.full((H, W), 7, np.uint8)])
    cv2.imwrite(str(folder / "f20.png"), rgba)
    (folder / "notes.txt").write_text("not an image")

    info = probe(folder, image_fps=10)
    assert (info.kind, info.num_frames, info.fps, info.width, info.height) == ("folder", 6, 10.0, W, H)
    frames = list(FrameReader(folder, image_fps=10))
    assert [f.index for f in frames] == list(range(6))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(6) / 10)
    for i in range(4):
        np.testing.assert_array_equal(frames[i].rgb, synthetic_frame(i))
    assert frames[4].rgb.shape == (H, W, 3)
    np.testing.assert_array_equal(frames[4].rgb, np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(frames[5].rgb, synthetic_frame(5))  # alpha dropped
    assert [f.index for f in FrameReader(folder, image_fps=10, fps=5)] == [0, 1, 2]
    assert [f.index for f in FrameReader(folder, image_fps=10, start=0.2, end=0.4)] == [2, 3]

    single = list(read_frames(folder / "f2.png"))
    assert len(single) == 1 and single[0].index == 0 and single[0].time_s == 0.0
    np.testing.assert_array_equal(single[0].rgb, synthetic_frame(1))


def test_folder_with_unreadable_image(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), synthetic_frame(i)[:, :, ::-1])
    (tmp_path / "001.jpg").write_bytes(b"garbage")
    reader = FrameReader(tmp_path)
    with caplog.at_level(logging.WARNING):
        frames = list(reader)
    assert [f.index for f in frames] == [0, 2]  # the bad file is skipped, later frames keep their index
    assert "1 unreadable image" in reader.problem and "001.jpg" in caplog.text


def test_truncated_video_decodes_partially(video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    reader = FrameReader(cut)
    with caplog.at_level(logging.WARNING):
        frames = list(reader)
    assert 3 <= len(frames) < N
    for f in frames:  # what was decoded is right
        assert red_x(f.rgb) == pytest.approx(29.5 + 3 * f.index, abs=0.5)
    assert reader.problem is not None and f"decoded {len(frames)} frame(s) of {N}" in reader.problem
    assert f"decoded {len(frames)} frame(s)" in caplog.text
    assert FrameReader(video).problem is None and list(FrameReader(video))  # the intact file reports nothing


def test_truncated_mkv_and_unopenable_mp4(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mkv = encode(tmp_path / "a.mkv")
    data = mkv.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    reader = FrameReader(tmp_path / "cut.mkv")
    with caplog.at_level(logging.WARNING):
        n = len(list(reader))
    assert 0 < n < N and reader.problem is not None and "~30" in reader.problem
    mp4 = encode(tmp_path / "b.mp4")  # index (moov) at the end: a cut file cannot be opened at all
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated"):
        FrameReader(tmp_path / "cut.mp4")
    with pytest.raises(InputError, match="not found"):
        FrameReader(tmp_path / "missing.mp4")


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = encode(tmp_path / "rot.mp4", n=3, rotation=90)  # 90 deg counter-clockwise, as phones record portrait
    info = probe(path)
    assert (info.width, info.height) == (H, W)
    first = next(iter(FrameReader(path)))
    assert first.rgb.shape == (W, H, 3)
    np.testing.assert_allclose(first.rgb.astype(float), np.rot90(synthetic_frame(0)).astype(float), atol=40)


def test_writer_roundtrip_and_atomicity(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.mp4"
    with VideoWriter(out, fps=24, size=(W, H)) as writer:
        for i in range(12):
            writer.write(synthetic_frame(i))
        assert not out.exists()  # only the temporary file exists while writing
        with pytest.raises(InputError, match="does not match"):
            writer.write(np.zeros((H + 1, W, 3), np.uint8))
    assert writer.codec == "libx264"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]
    info = probe(out)
    assert (info.num_frames, info.fps, info.width, info.height) == (12, 24.0, W, H)
    frames = list(read_frames(out))
    assert len(frames) == 12
    for f in frames:
        assert red_x(f.rgb) == pytest.approx(29.5 + 3 * f.index, abs=0.5)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_writer_abort_odd_size_and_fallback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "aborted.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, fps=30, size=(W, H)) as writer:
        writer.write(synthetic_frame(0))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the video nor its temporary file

    with VideoWriter(tmp_path / "odd.mp4", fps=29.97, size=(W - 1, H - 1)) as writer:
        for i in range(3):
            writer.write(synthetic_frame(i, W - 1, H - 1))
    info = probe(tmp_path / "odd.mp4")
    assert (info.num_frames, info.width, info.height) == (3, W, H) and info.fps == pytest.approx(29.97, abs=1e-3)

    with caplog.at_level(logging.WARNING):
        writer = VideoWriter(tmp_path / "fallback.mp4", fps=10, size=(W, H), codec="no_such_encoder")
    assert writer.codec == "mpeg4" and "MPEG-4" in caplog.text
    with writer:
        for i in range(5):
            writer.write(synthetic_frame(i))
    assert probe(tmp_path / "fallback.mp4").num_frames == 5

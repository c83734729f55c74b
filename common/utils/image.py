"""Image reading, person boxes and the affine crop (facts sheet sections 4.1-4.3), in numpy / OpenCV.

Boxes are ``xywh`` in pixels of the original image unless a name says ``xyxy``. The crop is ``warpAffine`` with
bilinear sampling on the **float32** image, as the original; keep OpenCV 4.x (``opencv-python-headless<5``):
OpenCV 5 samples differently and moves predicted poses by a few hundredths of a radian.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.errors import InputError


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as float32 RGB (H, W, 3) in [0, 255]; grey and alpha images become 3-channel RGB.

    EXIF orientation is ignored, as in the original (boxes refer to the stored pixel grid).
    """
    return load_image_uint8(path).astype(np.float32)


def load_image_uint8(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3) (the training path skips the full-image float conversion).

    Raises InputError for a missing file, one OpenCV cannot decode, and a truncated JPEG (which OpenCV would
    decode with the missing part grey, saying so only on stderr)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read image {path}: {err}") from err
    if jpeg_truncated(data):
        raise InputError(f"cannot read image {path}: the JPEG file is truncated (its data ends before the end-of-image "
                         "marker; decoders fill the rest with grey); copy or download it again")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None or img.size == 0:
        raise InputError(f"cannot read image {path}: not an image OpenCV can decode (or the file is truncated); "
                         "use a JPEG/PNG/BMP/TIFF/WebP file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def jpeg_truncated(data: bytes) -> bool:
    """True for JPEG bytes whose last scan has no end-of-image marker (FF D9) after it: the file was cut short.

    Inside entropy-coded data every 0xFF byte is stuffed (FF 00) or a restart marker (FF D0-D7), so an FF D9 after
    the last start-of-scan (FF DA) can only be the real end; data appended after it (some cameras do) is fine.
    Non-JPEG bytes give False.
    """
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    last_scan = data.rfind(b"\xff\xda")
    return last_scan < 0 or data.find(b"\xff\xd9", last_scan + 2) < 0


def sanitize_bbox(bbox, img_width: int, img_height: int) -> np.ndarray | None:
    """Clip an xywh box to the image as the original: None if nothing of it is left (or it is degenerate)."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(img_width - 1.0, x1 + max(0.0, w - 1))
    y2 = min(img_height - 1.0, y1 + max(0.0, h - 1))
    if w * h > 0 and x2 > x1 and y2 > y1:
        return np.array([x1, y1, x2 - x1, y2 - y1])
    return None


def process_bbox(bbox, img_width: int, img_height: int, aspect_ratio: float = 0.75,
                 ratio: float = 1.25) -> np.ndarray | None:
    """Sanitise, enlarge the smaller side to ``aspect_ratio`` (w/h) about the centre, then scale by ``ratio``.

    Returns float32 xywh, or None for a box that is degenerate or entirely outside the image.
    ``aspect_ratio`` is input width / height (384/512); ``ratio`` 1.25 for inference, 1.2 for most training sets.
    """
    box = sanitize_bbox(bbox, img_width, img_height)
    if box is None:
        return None
    w, h = box[2], box[3]
    c_x, c_y = box[0] + w / 2.0, box[1] + h / 2.0
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    box[2], box[3] = w * ratio, h * ratio
    box[0], box[1] = c_x - box[2] / 2.0, c_y - box[3] / 2.0
    return box.astype(np.float32)


def box_overlaps_image(box, img_width: int, img_height: int) -> bool:
    """Whether an xywh box (px) keeps some area after clipping to the image, on every side.

    :func:`sanitize_bbox` (the original's clipping) moves a box that lies entirely left of or above the image onto
    its border instead of rejecting it, so it cannot tell; a person box there would crop the wrong pixels.
    """
    x, y, w, h = (float(v) for v in box)
    return x + w - 1 > 0 and y + h - 1 > 0 and sanitize_bbox(box, img_width, img_height) is not None


def check_person_box(box, img_width: int, img_height: int) -> None:
    """Raise InputError for a box (xywh px) that is degenerate or lies entirely outside the image.

    Boxes partly outside are valid: they are clipped as the original does (:func:`sanitize_bbox`).
    """
    if not (float(box[2]) > 0 and float(box[3]) > 0):
        raise InputError(f"box {list(box)} is degenerate: width and height must be positive (X,Y,W,H in px)")
    if not box_overlaps_image(box, img_width, img_height):
        raise InputError(f"box {list(box)} (X,Y,W,H) lies entirely outside the {img_width}x{img_height} image")


def _rotate_2d(pt: np.ndarray, rot_rad: float) -> np.ndarray:
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs], dtype=np.float32)


def crop_transform(c_x: float, c_y: float, src_w: float, src_h: float, dst_w: int, dst_h: int, scale: float = 1.0,
                   rot: float = 0.0, inverse: bool = False) -> np.ndarray:
    """2x3 affine (float32) mapping the box (centre, size x scale, rotated by ``rot`` degrees) onto the
    ``dst_w x dst_h`` crop; ``inverse`` gives crop -> image. Three point pairs: centre, centre + half-height down
    vector, centre + half-width right vector (all float32, as the original)."""
    rot_rad = np.pi * rot / 180
    src_center = np.array([c_x, c_y], dtype=np.float32)
    src_down = _rotate_2d(np.array([0, src_h * scale * 0.5], dtype=np.float32), rot_rad)
    src_right = _rotate_2d(np.array([src_w * scale * 0.5, 0], dtype=np.float32), rot_rad)
    dst_center = np.array([dst_w * 0.5, dst_h * 0.5], dtype=np.float32)
    src = np.stack([src_center, src_center + src_down, src_center + src_right]).astype(np.float32)
    dst = np.stack([dst_center, dst_center + np.array([0, dst_h * 0.5], dtype=np.float32),
                    dst_center + np.array([dst_w * 0.5, 0], dtype=np.float32)]).astype(np.float32)
    trans = cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)
    return trans.astype(np.float32)


def generate_patch_image(img: np.ndarray, bbox: np.ndarray, scale: float, rot: float, do_flip: bool,
                         out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop ``bbox`` (xywh) from an (H, W, 3) float image into ``out_shape`` (H, W) with bilinear warpAffine.

    Flipping mirrors the whole image first. Returns (crop float32, img->crop 2x3, crop->img 2x3).
    """
    img_h, img_w = img.shape[:2]
    c_x = float(bbox[0] + 0.5 * bbox[2])
    c_y = float(bbox[1] + 0.5 * bbox[3])
    bw, bh = float(bbox[2]), float(bbox[3])
    if do_flip:
        img = img[:, ::-1, :]
        c_x = img_w - c_x - 1
    trans = crop_transform(c_x, c_y, bw, bh, out_shape[1], out_shape[0], scale, rot)
    patch = cv2.warpAffine(np.ascontiguousarray(img), trans, (int(out_shape[1]), int(out_shape[0])),
                           flags=cv2.INTER_LINEAR)
    inv = crop_transform(c_x, c_y, bw, bh, out_shape[1], out_shape[0], scale, rot, inverse=True)
    return patch.astype(np.float32), trans, inv


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'X,Y,W,H' (pixels) -> tuple; raises InputError for anything else."""
    parts = text.replace(" ", "").split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise InputError(f"--bbox '{text}' is not X,Y,W,H (four numbers in pixels, e.g. --bbox 100,50,200,400)")
    return vals  # type: ignore[return-value]


def image_has_alpha(path: Path) -> bool:
    """Whether an image file carries an alpha channel, from its header (PNG, WebP) or by decoding (TIFF, BMP)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            with open(path, "rb") as f:
                head = f.read(26)
            return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[25] in (4, 6)
        if suffix == ".webp":
            with open(path, "rb") as f:
                head = f.read(30)
            if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 25:
                return False
            if head[12:16] == b"VP8X":
                return bool(head[20] & 0x10)
            if head[12:16] == b"VP8L":
                return bool((int.from_bytes(head[21:25], "little") >> 28) & 1)
            return False
        if suffix in (".tif", ".tiff", ".bmp"):
            import cv2

            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            return img is not None and img.ndim == 3 and img.shape[2] == 4
    except OSError:
        return False
    return False

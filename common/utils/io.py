"""Atomic file writing: every output is written to a temporary file in its folder, then renamed into place, so
an interrupted run never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file next to ``path``; on success fsync and rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give outputs the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


def save_json(path: str | Path, obj: Any) -> Path:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=4)
        f.write("\n")
    return Path(path)


def save_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Wavefront OBJ: (V, 3) vertices in metres, (F, 3) 0-based faces (written 1-based, as the original)."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(vertices, dtype=np.float64)]
    f1 = np.asarray(faces, dtype=np.int64) + 1
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f1]
    with atomic_open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return Path(path)


def load_obj_vertices(path: str | Path) -> np.ndarray:
    """(V, 3) vertices of an OBJ file written by :func:`save_obj`."""
    with open(path) as f:
        return np.array([[float(t) for t in line.split()[1:4]] for line in f if line.startswith("v ")])


def save_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) RGB uint8/float image (JPEG/PNG by suffix) atomically."""
    import cv2

    ok, buf = cv2.imencode(Path(path).suffix or ".jpg", np.clip(rgb, 0, 255).astype(np.uint8)[:, :, ::-1])
    if not ok:
        raise OSError(f"cannot encode image for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())
    return Path(path)


def check_output_dir(path: str | Path, subdirs: tuple[str, ...] = (), flag: str = "--output") -> None:
    """Raise InputError unless ``path`` (and its ``subdirs``) can be created / written, without creating anything.

    Checked before a model is loaded, so a bad ``--output`` costs nothing and leaves nothing behind: a path that is a
    file or lies under a file, a folder (or the nearest existing parent of a folder to be made) where a probe file
    cannot be created (read-only or permission-denied; the probe is removed), or a sub-folder the outputs go to that
    exists as a file.
    """
    from common.errors import InputError

    path = Path(path).absolute()
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == path else f"lies under {part}, which is a file"
            raise InputError(f"{flag} {path} {where}; choose a folder")
    for sub in subdirs:
        if (path / sub).exists() and not (path / sub).is_dir():
            raise InputError(f"{flag} {path}: {path / sub} is a file where the outputs' folder '{sub}/' goes; move it "
                             f"or choose another {flag}")
    probe_dirs = [path / s for s in subdirs if (path / s).is_dir()]
    probe_dirs.append(next(p for p in (path, *path.parents) if p.exists()))
    for folder in probe_dirs:
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise InputError(f"{flag} {path}: cannot write in {folder} ({err.strerror or err}); choose a writable "
                             "folder") from None


def remove_stale_temporaries(folder: str | Path, recursive: bool = False) -> int:
    """Delete the temporary files :func:`atomic_open` leaves when a process is killed mid-write (SIGKILL, power
    loss): ``.<name>.<random>.tmp`` in ``folder`` (and its sub-folders with ``recursive``). Returns the count.
    Call it only where no other process is writing at the same time (a run's own output folder, at its start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for tmp in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                n += 1
    return n

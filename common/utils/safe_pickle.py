"""Reading pickles from files users hand us without running code from them.

A pickle can call any importable function while it loads (``os.system`` through ``__reduce__``, say), so a
downloaded checkpoint, HumanData file or body-model ``.pkl`` must never go through plain ``pickle.load``.
:func:`safe_load` unpickles with an allow-list: plain containers and numbers always work (they need no global),
numpy arrays / scalars / dtypes are rebuilt through numpy's own constructors, and a few optional families are
admitted only where a caller asks for them (``scipy.sparse`` matrices for SMPL's ``J_regressor``, torch tensors for
AGORA's fits). Anything else stops the load with :class:`UnsafePickleError` naming the offending global.

Torch checkpoints use torch's own restricted loader (``torch.load(weights_only=True)``), widened with the same numpy
globals by :func:`torch_safe_globals` (old snapshots stored NumPy RNG states).
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

# (module, name) pairs that rebuild numpy arrays, scalars and dtypes (numpy 1.x and 2.x spellings). Rebuilding an
# object-dtype array unpickles its elements through the same restricted unpickler, so this admits no code.
NUMPY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    # protocol-2 pickles store bytes as ``_codecs.encode(text, 'latin1')``
    ("_codecs", "encode"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "slice"), ("builtins", "bytearray"), ("builtins", "object"), ("copyreg", "_reconstructor"),
})
# scipy.sparse matrices (the SMPL model's J_regressor is a csc_matrix), old and new module paths
SCIPY_SPARSE_GLOBALS = frozenset(
    (mod, cls) for cls in ("csc_matrix", "csr_matrix", "coo_matrix")
    for mod in (f"scipy.sparse.{cls[:3]}", f"scipy.sparse._{cls[:3]}", "scipy.sparse"))
# torch tensors pickled with plain pickle (protocol 2): rebuilt safely, storages read with weights_only=True
TORCH_GLOBALS = frozenset({("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
                           ("torch._utils", "_rebuild_parameter"), ("torch", "Size"),
                           ("torch.storage", "_load_from_bytes")})


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for a global that is not on the allow-list (it could run code); the file is not loaded."""


def _load_storage_from_bytes(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``, which would ``torch.load`` the bytes without restriction."""
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only the ``allowed`` (module, name) pairs."""

    def __init__(self, file: IO[bytes], allowed: Iterable[tuple[str, str]] = NUMPY_GLOBALS, *,
                 encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.allowed = frozenset(allowed)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise UnsafePickleError(f"refusing to load the global {module}.{name}: only plain data (numbers, strings, "
                                    "lists, dicts, numpy arrays) is read from this file, since a pickle can run code")
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_storage_from_bytes
        return getattr(importlib.import_module(module), name)


def safe_load(file: IO[bytes], *, sparse: bool = False, torch_tensors: bool = False, encoding: str = "latin1") -> Any:
    """Unpickle plain data from the binary file object ``file`` (see the module docstring).

    ``sparse`` admits scipy.sparse csc/csr/coo matrices, ``torch_tensors`` torch tensors. ``encoding`` is used for
    Python 2 strings (``'latin1'`` reads the numpy arrays of Python 2 pickles, as the official SMPL files are).
    Raises :class:`UnsafePickleError` for anything else and ``pickle.UnpicklingError`` / ``EOFError`` for damaged
    data.
    """
    allowed = set(NUMPY_GLOBALS)
    if sparse:
        allowed |= SCIPY_SPARSE_GLOBALS
    if torch_tensors:
        allowed |= TORCH_GLOBALS
    return RestrictedUnpickler(file, allowed, encoding=encoding).load()


def safe_loads(data: bytes, **kwargs: Any) -> Any:
    """:func:`safe_load` of a bytes object."""
    return safe_load(io.BytesIO(data), **kwargs)


def torch_safe_globals() -> list[Any]:
    """Objects to pass to ``torch.serialization.safe_globals`` so ``torch.load(weights_only=True)`` also reads numpy
    arrays, scalars and dtypes (old snapshots stored NumPy's RNG state; mmcv checkpoints may hold numpy scalars)."""
    import numpy as np

    out: list[Any] = [np.ndarray, np.dtype]
    for mod, name in sorted(NUMPY_GLOBALS):
        if mod.startswith("numpy") and name in ("_reconstruct", "scalar"):
            try:
                out.append(getattr(importlib.import_module(mod), name))
            except (ImportError, AttributeError):  # the other numpy major version's module path
                continue
    # numpy 2 pickles dtypes through their concrete classes (numpy.dtypes.Float64DType, ...)
    out += [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGUSO"]
    return out


def read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, Any]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``f``, left positioned at the data (or, for an object
    array, at its pickle). Raises NotImplementedError for format versions other than 1.0 and 2.0."""
    import numpy as np

    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise NotImplementedError(f".npy format version {version}")


def verify_npz(path: str | Path) -> None:
    """Check that every object-dtype member of an ``.npz`` file is plain data (read through :func:`safe_load`).

    For files a third-party loader opens with ``np.load(allow_pickle=True)`` (the pip ``smplx`` package does so for
    SMPL-X models, whose ``joint2num`` / ``part2num`` members are pickled dicts): once the same bytes have passed
    this check, unpickling them runs no code. Raises :class:`UnsafePickleError` naming the member.
    """
    import zipfile

    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            with zf.open(name) as f:
                _, _, dtype = read_npy_header(f)
                if not dtype.hasobject:
                    continue
                try:
                    safe_load(f)
                except UnsafePickleError as err:
                    raise UnsafePickleError(f"member '{name[:-4]}': {err}") from None


def read_npy_plain(path: str | Path) -> Any:
    """A ``.npy`` file as an array; object arrays (e.g. a list of strings) are unpickled with :func:`safe_load`."""
    import numpy as np

    with open(path, "rb") as f:
        _, _, dtype = read_npy_header(f)
        if dtype.hasobject:
            return safe_load(f)
    return np.load(path, allow_pickle=False)

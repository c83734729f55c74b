"""Own-format datalist entries (nested dicts) as columns of a store, and back: no pickles, no code from the file.

An entry is a tree of dicts, tuples and lists whose leaves are ``None``, Python ``bool`` / ``int`` / ``float`` /
``str``, numpy scalars, numpy arrays (numeric dtypes), :class:`data.formats.base.LazyArray` and registered module
functions (``expand``; see :func:`data.formats.base.entry_function`). :func:`encode_entries` walks every entry:

* its **structure** (keys in order, container types, which leaves are None, leaf kinds, dtypes and shapes)
  becomes a *signature*; the few distinct signatures are stored as JSON, each entry keeps one small integer;
* every leaf position ``(path, kind, dtype, shape)`` becomes a **column**: fixed-width arrays ``(N, *shape)``
  (zeros in entries without that leaf), ``str`` leaves UTF-8 bytes + ``(N + 1,)`` offsets; a column whose value is
  the same in every entry holding it (the dataset name, an all-zero keypoint array) is stored once;
* functions are stored by registered name and resolved through the registry on load (only modules of
  :data:`data.formats.MODULES` are imported for it), so opening a cache never runs anything it contains.

:class:`EntryColumns` is the mapped view: ``entry(i)`` rebuilds entry ``i`` with the same keys, types, dtypes and
values as the loader produced (arrays are fresh copies), then completes it with its ``expand`` function, exactly
like :meth:`data.formats.base.EntryRecords.entry`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from common.errors import InputError
from data.colstore import ColumnStore
from data.formats.base import ENTRY_FUNCTIONS, EntryRecords, LazyArray, function_name

ENTRY_FORMAT = 1  # bump when the encoding changes


class _Columns:
    """Leaf values collected while walking the entries: column id -> (kind, dtype, shape, rows, values)."""

    def __init__(self) -> None:
        self.ids: dict[tuple, int] = {}
        self.specs: list[tuple[str, str, tuple[int, ...]]] = []
        self.rows: list[list[int]] = []
        self.values: list[list[Any]] = []
        self.row = 0

    def add(self, path: str, kind: str, dtype: str, shape: tuple[int, ...], value: Any) -> tuple:
        key = (path, kind, dtype, shape)
        cid = self.ids.get(key)
        if cid is None:
            cid = self.ids[key] = len(self.specs)
            self.specs.append((kind, dtype, shape))
            self.rows.append([])
            self.values.append([])
        self.rows[cid].append(self.row)
        self.values[cid].append(value)
        return ("leaf", cid)


def _walk(v: Any, path: str, cols: _Columns) -> tuple:
    """The signature of value ``v`` at ``path``; its leaves go to ``cols``."""
    if v is None:
        return ("none",)
    if isinstance(v, dict):
        for k in v:
            if not isinstance(k, str):
                raise TypeError(f"{path}: dict key {k!r} is not a str")
        return ("dict", tuple((k, _walk(x, f"{path}/{k}", cols)) for k, x in v.items()))
    if isinstance(v, (tuple, list)):
        kind = "tuple" if isinstance(v, tuple) else "list"
        return (kind, tuple(_walk(x, f"{path}/{j}", cols) for j, x in enumerate(v)))
    if isinstance(v, np.ndarray):
        if v.dtype.hasobject or v.dtype.kind in "USV":
            raise TypeError(f"{path}: array of dtype {v.dtype} cannot be stored in columns")
        return cols.add(path, "array", v.dtype.str, v.shape, v)
    if isinstance(v, np.generic):
        if v.dtype.kind in "OUSV":
            raise TypeError(f"{path}: numpy scalar of dtype {v.dtype} cannot be stored in columns")
        return cols.add(path, "npscalar", v.dtype.str, (), v)
    if isinstance(v, bool):
        return cols.add(path, "bool", "|b1", (), v)
    if isinstance(v, int):
        return cols.add(path, "int", "<i8", (), v)
    if isinstance(v, float):
        return cols.add(path, "float", "<f8", (), v)
    if isinstance(v, str):
        return cols.add(path, "str", "|u1", (), v)
    if isinstance(v, LazyArray):
        return ("lazy", function_name(v.reader, path), _walk(v.path, f"{path}/path", cols),
                _walk(v.args, f"{path}/args", cols))
    if callable(v):
        return ("func", function_name(v, path))
    raise TypeError(f"{path}: values of type {type(v).__name__} cannot be stored in the datalist cache (use arrays, "
                    "numbers, str, dicts, tuples, LazyArray or a function registered with @entry_function)")


def _same_rows(stacked: np.ndarray) -> bool:
    """Every row bit-identical to the first (so NaN and -0.0 survive a constant column)."""
    flat = np.ascontiguousarray(stacked).reshape(len(stacked), -1).view(np.uint8)
    return bool((flat == flat[:1]).all())


def encode_entries(records: EntryRecords, writer) -> dict[str, Any]:
    """Write the entries of ``records`` as columns into ``writer`` (a :class:`data.colstore.StoreWriter`); returns
    the JSON metadata that :class:`EntryColumns` needs (signatures, column specs, name, split, skipped, info)."""
    cols = _Columns()
    sig_ids: dict[tuple, int] = {}
    row_sig = np.zeros(len(records), np.int32)
    for i, entry in enumerate(records.entries):
        cols.row = i
        sig = _walk(entry, "", cols)
        row_sig[i] = sig_ids.setdefault(sig, len(sig_ids))
    n = len(records)
    writer.add("signature", row_sig)
    specs = []
    for cid, (kind, dtype, shape) in enumerate(cols.specs):
        rows, values = np.asarray(cols.rows[cid], np.int64), cols.values[cid]
        if kind == "str":
            encoded = [s.encode("utf-8") for s in values]
            const = all(e == encoded[0] for e in encoded)
            full = encoded[:1] if const else [b""] * n
            if not const:
                for r, e in zip(rows.tolist(), encoded):
                    full[r] = e
            offsets = np.zeros(len(full) + 1, np.int64)
            np.cumsum([len(e) for e in full], out=offsets[1:])
            writer.add(f"c{cid}.bytes", np.frombuffer(b"".join(full), np.uint8))
            writer.add(f"c{cid}.offsets", offsets)
        else:
            stacked = np.stack([np.asarray(v) for v in values]).astype(np.dtype(dtype), copy=False)
            const = _same_rows(stacked)
            if const:
                column = stacked[:1]
            elif len(rows) == n:
                column = stacked
            else:
                column = np.zeros((n, *shape), np.dtype(dtype))
                column[rows] = stacked
            writer.add(f"c{cid}", column)
        specs.append({"kind": kind, "dtype": dtype, "shape": list(shape), "const": const})
    return {"kind": "entries", "format": ENTRY_FORMAT, "name": records.name, "split": records.split,
            "skipped": records.skipped, "info": records.info, "stats": records.stats(), "records": n,
            "signatures": list(sig_ids), "columns": specs}


def resolve_function(name: str) -> Callable:
    """A registered entry function by name; its module is imported only if it is a known loader module."""
    if name not in ENTRY_FUNCTIONS:
        from data.formats import MODULES

        module = name.split(":", 1)[0]
        if module in MODULES.values():
            importlib.import_module(module)
    try:
        return ENTRY_FUNCTIONS[name]
    except KeyError:
        raise InputError(f"the datalist cache refers to an unknown function {name!r}; delete the cache folder "
                         "(dataset/cache/) so that it is rebuilt") from None


class EntryColumns:
    """The entries of an own-format cache, mapped (same interface as :class:`data.formats.base.EntryRecords`)."""

    def __init__(self, store: ColumnStore) -> None:
        meta = store.meta
        if meta.get("kind") != "entries" or meta.get("format") != ENTRY_FORMAT:
            raise InputError(f"{store.path} is not an own-format entry cache of format {ENTRY_FORMAT}")
        self.store = store
        self.name, self.split = meta["name"], meta["split"]
        self.skipped: dict[str, int] = dict(meta["skipped"])
        self.info: dict[str, Any] = dict(meta["info"])
        self._n = int(meta["records"])
        self._sig = store["signature"]
        self._leaves = [self._leaf(cid, spec) for cid, spec in enumerate(meta["columns"])]
        self._build = [self._compile(sig) for sig in meta["signatures"]]

    # -- decoding -----------------------------------------------------------------------------------------------
    def _leaf(self, cid: int, spec: dict[str, Any]) -> Callable[[int], Any]:
        kind, const = spec["kind"], spec["const"]
        if kind == "str":
            data, off = self.store[f"c{cid}.bytes"], self.store[f"c{cid}.offsets"]
            if const:
                text = data.tobytes().decode("utf-8")
                return lambda i: text
            return lambda i: data[off[i]:off[i + 1]].tobytes().decode("utf-8")
        a = self.store[f"c{cid}"]
        if const:  # one row, kept in memory
            row = np.array(a[0])
            if kind == "array":
                return lambda i: row.copy()
            value = {"npscalar": lambda x: x, "bool": bool, "int": int, "float": float}[kind](a[0])
            return lambda i: value
        if kind == "array":
            if not spec["shape"]:  # 0-d arrays: a[i] would be a numpy scalar
                return lambda i: np.array(a[i])
            return lambda i: a[i].copy()
        if kind == "npscalar":
            return lambda i: a[i]
        convert = {"bool": bool, "int": int, "float": float}[kind]
        return lambda i: convert(a[i])

    def _compile(self, sig: Sequence) -> Callable[[int], Any]:
        kind = sig[0]
        if kind == "none":
            return lambda i: None
        if kind == "leaf":
            return self._leaves[sig[1]]
        if kind == "dict":
            items = [(k, self._compile(s)) for k, s in sig[1]]
            return lambda i: {k: f(i) for k, f in items}
        if kind in ("tuple", "list"):
            parts = [self._compile(s) for s in sig[1]]
            if kind == "tuple":
                return lambda i: tuple(f(i) for f in parts)
            return lambda i: [f(i) for f in parts]
        if kind == "lazy":
            reader, path, args = resolve_function(sig[1]), self._compile(sig[2]), self._compile(sig[3])
            return lambda i: LazyArray(reader, path(i), args(i))
        if kind == "func":
            fn = resolve_function(sig[1])
            return lambda i: fn
        raise InputError(f"{self.store.path}: unknown structure {kind!r} in the cache; delete it so it is rebuilt")

    # -- the EntryRecords interface -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def raw(self, i: int) -> dict[str, Any]:
        """Entry ``i`` as the loader stored it (before ``expand``)."""
        i = int(i)
        if not -self._n <= i < self._n:
            raise IndexError(f"entry {i} out of range for {self.name} ({self._n} entries)")
        i %= self._n
        return self._build[int(self._sig[i])](i)

    def entry(self, i: int) -> dict[str, Any]:
        """Entry ``i`` (fresh arrays), completed by its ``expand`` function if it has one."""
        out = self.raw(i)
        expand = out.pop("expand", None)
        return expand(out) if expand is not None else out

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entry(i)

    @property
    def entries(self) -> _RawEntries:
        """The stored entries as a read-only sequence (as ``EntryRecords.entries``)."""
        return _RawEntries(self)

    def image_path(self, i: int) -> str:
        return str(self.raw(i)["img_path"])

    def stats(self) -> dict[str, Any]:
        return dict(self.store.meta["stats"])

    def __reduce__(self):  # spawned workers map the same files
        return (EntryColumns, (self.store,))


class _RawEntries(Sequence):
    def __init__(self, owner: EntryColumns) -> None:
        self._owner = owner

    def __len__(self) -> int:
        return len(self._owner)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._owner.raw(j) for j in range(*i.indices(len(self)))]
        return self._owner.raw(i)

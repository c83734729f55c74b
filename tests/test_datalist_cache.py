"""Shared datalist caches (data/colstore.py, data/cache.py, data/entry_columns.py, data/cache_sync.py): same entries
as the loaders, rebuilt when stale, never read half-written, pages shared between processes, one builder per node.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import CacheWaitTimeout, InputError
from data import cache as hd_cache
from data import cache_sync
from data.catalog import CATALOG, HUMANDATA_NAMES, OWN_LOADER_NAMES
from data.colstore import MARKER, ColumnStore, StoreWriter
from data.formats import load_own
from data.formats.base import EntryRecords, LazyArray
from tests.test_humandata import _fake_tree, make_humandata, save


def same(a, b, where: str = "entry") -> None:
    """Assert ``a`` and ``b`` are the same value: same types all the way down, dict keys in the same order, arrays
    of the same dtype, shape and bits."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for j, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{j}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
        assert b.flags.writeable, f"{where}: read-only array (the caller may edit entries)"
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, LazyArray):
        assert a.reader is b.reader and a.path == b.path and a.args == b.args, where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


# ----------------------------------------------------------------------------------------------------------------
# same entries as today's loaders, for every catalog dataset
@pytest.fixture(scope="module")
def own_root(tmp_path_factory, body_model_dir):
    from data.formats import agora, ehf, human36m, mpii, mscoco, pw3d, ubody

    root = tmp_path_factory.mktemp("own_root")
    ehf.write_synthetic_ehf(root, body_model_dir, n=2)
    pw3d.write_synthetic_pw3d(root, body_model_dir, n_train=2, n_test=2)
    agora.write_synthetic_agora(root, body_model_dir, n_images=1, people=2)
    ubody.write_synthetic_ubody(root, body_model_dir, scenes=("Talk",), videos_per_scene=2, frames_per_video=1)
    mscoco.write_synthetic_mscoco(root, body_model_dir, n=3)
    mpii.write_synthetic_mpii(root, body_model_dir, n=3)
    human36m.write_synthetic_human36m(root, body_model_dir, frames=(0,))
    return root


def test_own_format_caches_give_the_loaders_entries(own_root, tmp_path):
    from data.entry_columns import EntryColumns

    checked = 0
    for name in OWN_LOADER_NAMES:
        for split in CATALOG[name].splits:
            kw = dict(data_root=own_root, sample_interval=1)
            loaded = load_own(name, split, **kw, use_cache=False)
            assert isinstance(loaded, EntryRecords) and len(loaded) > 0, (name, split)
            built = load_own(name, split, **kw, cache_dir=tmp_path)
            reopened = load_own(name, split, **kw, cache_dir=tmp_path)
            for cached in (built, reopened, pickle.loads(pickle.dumps(reopened))):
                assert isinstance(cached, EntryColumns) and len(cached) == len(loaded), (name, split)
                assert cached.skipped == loaded.skipped and cached.stats() == loaded.stats()
                for i in range(len(loaded)):
                    same(loaded.entries[i], cached.entries[i], f"{name}:{split}[{i}] stored")
                    same(loaded.entry(i), cached.entry(i), f"{name}:{split}[{i}]")
                    assert cached.image_path(i) == loaded.image_path(i)
                same(loaded.entry(-1), cached.entry(-1), f"{name}:{split}[-1]")
                with pytest.raises(IndexError):
                    cached.entry(len(loaded))
            checked += 1
    assert checked == sum(len(CATALOG[n].splits) for n in OWN_LOADER_NAMES) >= 7
    assert not list(tmp_path.rglob("*.pkl"))  # columns and JSON only
    for store in tmp_path.glob("*.cols"):
        for column in store.glob("*.npy"):
            np.load(column, allow_pickle=False)  # would raise for an object (pickled) array


def test_humandata_caches_give_the_readers_entries(tmp_path):
    root = tmp_path / "dataset"
    _fake_tree(root)
    for k, name in enumerate(HUMANDATA_NAMES):  # a distinct small file per catalog dataset (quirks included)
        for split in CATALOG[name].splits:
            for rel in CATALOG[name].files[split]:
                save(root / rel, make_humandata(12, seed=k))
    for name in HUMANDATA_NAMES:
        for split in CATALOG[name].splits:
            direct = hd_cache.load_dataset(name, split, data_root=root, use_cache=False)
            cached = hd_cache.load_dataset(name, split, data_root=root)
            again = pickle.loads(pickle.dumps(hd_cache.load_dataset(name, split, data_root=root)))
            assert len(direct) == len(cached) == len(again) > 0 and cached.skipped == direct.skipped
            for i in range(len(direct)):
                same(direct.entry(i), cached.entry(i), f"{name}:{split}[{i}]")
                same(direct.entry(i), again.entry(i), f"{name}:{split}[{i}] unpickled")
            assert all(isinstance(p, hd_cache.MappedRecords) for p in cached.parts)


def test_streamed_build_in_small_blocks_with_filters(tmp_path, monkeypatch):
    """Block boundaries, the sample interval and row filters in the streamed build give the in-memory records."""
    from data import humandata_scan

    d = make_humandata(23, seed=3)
    d["keypoints2d_smplx"][[4, 9], 0, 1] = np.nan  # rows 4 and 9: non-finite 2D pelvis
    d["keypoints3d_smplx"][12, 0, 0] = np.inf
    d["bbox_xywh"][[2, 13], 2] = 0  # invalid boxes (odd rows are not sampled)
    annot = save(tmp_path / "f.npz", d)
    kw = dict(name="Test", img_dir=tmp_path, sample_interval=2, cache_dir=tmp_path / "cache")
    direct = hd_cache.load_or_build(annot, **kw, use_cache=False)
    real = humandata_scan.scan_humandata
    monkeypatch.setattr(hd_cache, "scan_humandata", lambda *a, **k: real(*a, **k, block=3))
    cached = hd_cache.load_or_build(annot, **kw)
    assert cached.skipped == direct.skipped == {"invalid_bbox": 1, "nonfinite_keypoints3d": 1,
                                                "nonfinite_keypoints2d": 1}
    assert [cached.entry(i)["index"] for i in range(len(cached))] == [0, 6, 8, 10, 14, 16, 18, 20, 22]
    for i in range(len(direct)):
        same(direct.entry(i), cached.entry(i), f"[{i}]")
    assert cached.stats() == direct.stats()


# ----------------------------------------------------------------------------------------------------------------
# stale and half-written caches
def test_stale_caches_are_rebuilt(tmp_path, own_root, monkeypatch):
    annot = save(tmp_path / "c.npz", make_humandata(5))
    kw = dict(name="Test", img_dir=tmp_path, cache_dir=tmp_path / "cache")
    calls = []
    real = hd_cache.scan_humandata
    monkeypatch.setattr(hd_cache, "scan_humandata", lambda *a, **k: calls.append(1) or real(*a, **k))
    hd_cache.load_or_build(annot, **kw)
    hd_cache.load_or_build(annot, **kw)
    assert calls == [1]
    hd_cache.load_or_build(annot, **kw, sample_interval=2)  # options
    assert calls == [1, 1]
    os.utime(annot, ns=(annot.stat().st_atime_ns, annot.stat().st_mtime_ns + 10**9))  # the file
    hd_cache.load_or_build(annot, **kw)
    assert calls == [1, 1, 1]
    hd_cache.reader_source_digest.cache_clear()
    monkeypatch.setattr(hd_cache, "_READER_SOURCES", (*hd_cache._READER_SOURCES, "cache.py"))  # the reader code
    hd_cache.load_or_build(annot, **kw)
    assert calls == [1, 1, 1, 1] and len(list((tmp_path / "cache").glob("*.cols"))) == 2
    hd_cache.reader_source_digest.cache_clear()
    # own formats: the loaders' source is part of the key
    import data.formats as formats
    from data import entry_columns

    built = []
    real_encode = entry_columns.encode_entries
    monkeypatch.setattr(entry_columns, "encode_entries", lambda *a: built.append(1) or real_encode(*a))
    load_own("MPII", "train", data_root=own_root, cache_dir=tmp_path / "own")
    load_own("MPII", "train", data_root=own_root, cache_dir=tmp_path / "own")
    assert built == [1]
    monkeypatch.setattr(formats, "CACHE_FORMAT", formats.CACHE_FORMAT + 100)  # stands for any change of the key
    load_own("MPII", "train", data_root=own_root, cache_dir=tmp_path / "own")
    assert built == [1, 1] and len(list((tmp_path / "own").glob("*.cols"))) == 1  # replaced, not added


def test_half_written_caches_are_never_read(tmp_path, monkeypatch):
    annot = save(tmp_path / "c.npz", make_humandata(5))
    kw = dict(name="Test", img_dir=tmp_path, cache_dir=tmp_path / "cache")
    real = hd_cache.scan_humandata

    def crash(path, opts, writer, **k):  # the build dies after writing some columns
        writer.add("index", np.arange(3))
        raise KeyboardInterrupt

    monkeypatch.setattr(hd_cache, "scan_humandata", crash)
    with pytest.raises(KeyboardInterrupt):
        hd_cache.load_or_build(annot, **kw)
    # no store and no temporary folder left behind; only the builder's claim, which says that it failed
    (claim,) = (tmp_path / "cache").iterdir()
    assert claim.name.endswith(".cols.builder") and json.loads(claim.read_text())["status"] == "failed"
    monkeypatch.setattr(hd_cache, "scan_humandata", real)
    good = hd_cache.load_or_build(annot, **kw)
    (store,) = (tmp_path / "cache").iterdir()  # the successful build removed the claim
    key = (store / MARKER).read_text()
    # without its marker a store is not read, however complete its files look
    (store / MARKER).unlink()
    assert ColumnStore.open(store, key) is None
    calls = []
    monkeypatch.setattr(hd_cache, "scan_humandata", lambda *a, **k: calls.append(1) or real(*a, **k))
    rebuilt = hd_cache.load_or_build(annot, **kw)
    assert calls == [1] and (store / MARKER).read_text() == key
    same(good.entry(4), rebuilt.entry(4))
    # a marker with another key (a store of other inputs) is not read either
    assert ColumnStore.open(store, key[::-1]) is None and ColumnStore.open(store, key) is not None


def test_writer_commits_atomically(tmp_path):
    final = tmp_path / "s.cols"
    with pytest.raises(RuntimeError):
        with StoreWriter(final, "k1") as w:
            w.add("a", np.arange(4))
            col = w.stream("b", (2,), np.float32)
            col.append(np.ones((3, 2)))
            raise RuntimeError
    assert not final.exists() and not list(tmp_path.iterdir())
    with StoreWriter(final, "k1") as w:
        col = w.stream("b", (2,), np.float32)
        for k in range(3):
            col.append(np.full((k, 2), k))
        w.add("empty", np.zeros((0, 3)))
        w.commit({"x": 1})
    store = ColumnStore.open(final, "k1")
    assert store.meta == {"x": 1} and store["b"].shape == (3, 2) and store["b"][:, 0].tolist() == [1, 2, 2]
    assert store["empty"].shape == (0, 3) and not store["b"].flags.writeable
    with StoreWriter(final, "k2") as w:  # replaces the stale store; the old mapping stays valid
        w.add("b", np.zeros((1, 2), np.float32))
        w.commit({})
    assert store["b"][:, 0].tolist() == [1, 2, 2] and ColumnStore.open(final, "k2")["b"].shape == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.cols"]


# ----------------------------------------------------------------------------------------------------------------
# sharing between processes
_TOUCH = textwrap.dedent("""
    import sys
    from data.colstore import ColumnStore
    store = ColumnStore.open(sys.argv[1], sys.argv[2])
    total = sum(float(store[name].sum()) for name in store.names)  # touches every page
    print("ready", flush=True)
    sys.stdin.readline()
""")


def _mapped(pid: int, folder: Path) -> tuple[int, int]:
    """(Rss, Pss) in kB of process ``pid``'s mappings of files in ``folder`` (/proc/<pid>/smaps)."""
    rss = pss = 0
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
            inside = len(head) >= 6 and head[5].startswith(str(folder))
        elif inside and head[0] == "Rss:":
            rss += int(head[1])
        elif inside and head[0] == "Pss:":
            pss += int(head[1])
    return rss, pss


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc smaps")
def test_two_processes_share_the_pages(tmp_path):
    final = tmp_path / "big.cols"
    with StoreWriter(final, "k") as w:
        w.add("joint_img", np.random.default_rng(0).random((8000, 137, 3), dtype=np.float32))  # 13 MB
        w.commit({})
    size_kb = sum(p.stat().st_size for p in final.glob("*.npy")) // 1024
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    procs = [subprocess.Popen([sys.executable, "-c", _TOUCH, str(final), "k"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        usage = [_mapped(p.pid, final) for p in procs]
        rollup = [Path(f"/proc/{p.pid}/smaps_rollup").read_text() for p in procs]
    finally:
        for p in procs:
            p.communicate("\n", timeout=30)
    for (rss, pss), text in zip(usage, rollup):
        assert rss >= 0.95 * size_kb, (rss, size_kb)  # every page mapped and resident in both processes
        assert pss <= 0.55 * size_kb, (pss, size_kb)  # ... and counted once between them
        assert int(text.split("Pss:")[1].split()[0]) < int(text.split("Rss:")[1].split()[0])


# ----------------------------------------------------------------------------------------------------------------
# one builder per node
def test_waiting_rank_times_out_naming_the_builder(tmp_path):
    final = tmp_path / "cache" / "x.cols"
    never = []
    with pytest.raises(CacheWaitTimeout) as err:  # nobody builds
        cache_sync.open_or_build(final, "k", lambda: never.append(1), ColumnStore, builder=False, timeout=0.2)
    msg = str(err.value)
    assert "no builder has claimed it" in msg and socket.gethostname() in msg and "local rank 0" in msg
    assert "main.humandata_tool cache" in msg and "data.cache_timeout" in msg and str(final) in msg and not never
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live builder that does not finish in time
        final.parent.mkdir(parents=True, exist_ok=True)
        claim = {"host": socket.gethostname(), "pid": sleeper.pid, "local_rank": 0, "job": cache_sync.job_id(),
                 "started": time.time(), "status": "building", "error": None}
        cache_sync.claim_path(final).write_text(json.dumps(claim))
        with pytest.raises(CacheWaitTimeout, match=f"local rank 0 of host {socket.gethostname()} \\(pid "
                                                   f"{sleeper.pid}"):
            cache_sync.wait_for_store(final, "k", timeout=0.3, poll=0.05)
    finally:
        sleeper.kill()
        sleeper.wait()
    start = time.monotonic()  # a builder of this run that died is reported at once
    with pytest.raises(InputError, match=f"exited without finishing.*pid {sleeper.pid}"):
        cache_sync.wait_for_store(final, "k", timeout=30, poll=0.05)
    cache_sync.write_claim(final, error="InputError: bedlam_train.npz is corrupt")  # ... and one that failed
    with pytest.raises(InputError, match="failed: InputError: bedlam_train.npz is corrupt"):
        cache_sync.wait_for_store(final, "k", timeout=30, poll=0.05)
    assert time.monotonic() - start < 5


def test_waiting_rank_opens_what_the_builder_commits(tmp_path):
    final = tmp_path / "x.cols"
    annot = save(tmp_path / "c.npz", make_humandata(5))
    kw = dict(name="Test", img_dir=tmp_path, cache_dir=tmp_path)

    def build_later():
        time.sleep(0.3)
        hd_cache.load_or_build(annot, **kw, builder=True)

    thread = threading.Thread(target=build_later)
    thread.start()
    waited = hd_cache.load_or_build(annot, **kw, builder=False, timeout=30)
    thread.join()
    assert isinstance(waited, hd_cache.MappedRecords) and len(waited) == 5
    assert not cache_sync.claim_path(waited.store.path).exists()  # the builder removed its claim
    same(waited.entry(2), hd_cache.load_or_build(annot, **kw, use_cache=False).entry(2))
    assert not final.exists()


def test_cache_command_builds_every_set_of_a_config(own_root, tmp_path, capsys):
    from main import humandata_tool

    overrides = [f"paths.data_root={own_root}", "data.trainset_humandata=()", "data.trainset_3d=MPII,PW3D",
                 "data.sample_interval={'PW3D': 1}"]
    args = ["cache", "--config", "smpler_x_synthetic", *overrides, "--testset", "EHF"]
    assert humandata_tool.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] + line.split()[-1:] for line in lines] == [
        ["MPII", "train", "built"], ["PW3D", "train", "built"], ["EHF", "test", "built"]]
    counts = {line.split()[0]: int(line.split()[2]) for line in lines}
    assert counts == {"MPII": 3, "PW3D": 2, "EHF": 2}  # what the synthetic copies hold
    assert humandata_tool.main(args) == 0  # a second run finds them
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["reused"] * 3
    # a training process then only opens them (it would wait, not build, on a non-zero local rank)
    from common.config import load_config
    from data.datasets import load_records

    cfg = load_config("smpler_x_synthetic", overrides)
    assert len(load_records(cfg, "MPII", "train", train=True, builder=False)) == 3
    # a missing dataset is named and makes the command fail
    assert humandata_tool.main(["cache", "--config", "smpler_x_synthetic", *overrides, "data.trainset_2d=BEDLAM",
                                "--no-test"]) == 2
    out = capsys.readouterr()
    assert "BEDLAM" in out.out and "FAILED" in out.out and "1 of 3 dataset(s) failed: BEDLAM" in out.err

"""The measured processes of bench/bench_datalist.py, each run in a fresh interpreter and printing one JSON line.

    python -m bench.datalist_procs cold-new  CACHE_DIR FILE...    build the mapped caches (new code path)
    python -m bench.datalist_procs cold-old  REV FILE...          read the files with the reader of git revision REV
    python -m bench.datalist_procs warm-new  TOUCH CACHE_DIR FILE...  open the mapped caches, (TOUCH=touch: read
                                                                  every page,) time lookups
    python -m bench.datalist_procs warm-old  TOUCH NPZ...         the old cache: np.load of one .npz per file
    python -m bench.datalist_procs rank MODE WORKERS CACHE_DIR ARG...  a training rank with WORKERS data-loader
                                                                  workers that all touch the datalist; prints its
                                                                  and its workers' pids, then waits for a line

Memory figures are in GiB: ``peak`` = ``ru_maxrss`` of the process, ``rss`` = VmRSS now.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GIB = 2**30
OPTS = dict(name="Bench", split="train", sample_interval=1, img_shape=None, camera=None, quirks=None,
            params_required=True)


def rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def old_reader(rev: str):
    """``data/humandata.py`` of git revision ``rev`` (the reader before the mapped cache), as module
    ``old_humandata`` (it imports the current data.catalog and data.npz_reader, whose interfaces it uses)."""
    import importlib.util

    src = subprocess.run(["git", "show", f"{rev}:data/humandata.py"], capture_output=True, text=True, check=True)
    path = Path(tempfile.mkdtemp()) / "old_humandata.py"
    path.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location("old_humandata", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_humandata"] = module
    spec.loader.exec_module(module)
    return module


def open_new(cache_dir: str, files: list[str], builder: bool):
    from data.cache import load_or_build
    from data.humandata import ConcatRecords

    return ConcatRecords([load_or_build(f, img_dir="/tmp", cache_dir=cache_dir, builder=builder, **OPTS)
                          for f in files])


def open_old_cache(npzs: list[str]):
    """The old warm start (data/cache.py before the column stores): every column of an .npz read into memory."""
    from data.humandata import ConcatRecords, HumanDataRecords

    parts = []
    for path in npzs:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__cache_meta__"]))
            arrays = {k: z[k] for k in z.files if not k.startswith("__cache")}
        parts.append(HumanDataRecords.from_arrays(arrays, meta, "/tmp"))
    return ConcatRecords(parts)


def touch(records) -> float:
    """Read every page of every column (what an epoch's lookups do in the end); returns a checksum."""
    total = 0.0
    for part in getattr(records, "parts", [records]):
        arrays, _ = part.to_arrays()
        total += sum(float(np.asarray(a).sum(dtype=np.float64)) for a in arrays.values())
    return total


def lookup_us(records, n: int = 20000) -> float:
    """Median over 5 rounds of the mean time of ``entry(i)`` at random indices, microseconds."""
    rng = np.random.default_rng(0)
    rounds = []
    for _ in range(5):
        idx = rng.integers(0, len(records), n // 5)
        start = time.perf_counter()
        for i in idx:
            records.entry(int(i))
        rounds.append((time.perf_counter() - start) / len(idx) * 1e6)
    return float(np.median(rounds))


def _imports() -> None:
    """What a training process has imported anyway (torch included), so that start-up times and memory growth
    measure the datalist only."""
    import torch  # noqa: F401

    import data.cache  # noqa: F401
    import data.humandata  # noqa: F401


def cmd_cold_new(cache_dir: str, *files: str) -> dict:
    _imports()
    before = rss()
    start = time.perf_counter()
    records = open_new(cache_dir, list(files), builder=True)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(cache_dir).rglob("*") if p.is_file())
    return {"seconds": seconds, "peak": peak(), "rss_before": before, "rss": rss(), "records": len(records),
            "cache": size / GIB}


def cmd_cold_old(rev: str, *files: str) -> dict:
    from data.humandata import ConcatRecords

    old = old_reader(rev)
    _imports()
    before = rss()
    start = time.perf_counter()
    records = ConcatRecords([old.load_humandata(f, img_dir="/tmp", **OPTS) for f in files])
    return {"seconds": time.perf_counter() - start, "peak": peak(), "rss_before": before, "rss": rss(),
            "records": len(records)}


def cmd_warm(mode: str, touching: str, *args: str) -> dict:
    _imports()
    before = rss()
    start = time.perf_counter()
    records = open_new(args[0], list(args[1:]), builder=False) if mode == "new" else open_old_cache(list(args))
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "rss_before": before, "rss_open": rss(), "records": len(records)}
    if touching == "touch":
        touch(records)
        out["rss_touched"] = rss()
    out.update(lookup_us=lookup_us(records), peak=peak())
    return out


def cmd_rank(mode: str, workers: str, *args: str) -> None:
    """A rank: the datalist (mode new / old / none) and a DataLoader whose persistent workers all touch it."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    records = None
    if mode == "new":
        records = open_new(args[0], list(args[1:]), builder=False)
    elif mode == "old":
        records = open_old_cache(list(args))

    class Touching(Dataset):
        def __len__(self) -> int:
            return max(1, int(workers))

        def __getitem__(self, k: int):
            if records is not None:
                touch(records)
                for i in np.random.default_rng(k).integers(0, len(records), 200):
                    records.entry(int(i))
            return torch.zeros(1)

    if records is not None:
        touch(records)
    pids = []
    if int(workers):
        loader = DataLoader(Touching(), batch_size=None, num_workers=int(workers), persistent_workers=True,
                            multiprocessing_context="fork")
        it = iter(loader)
        for _ in range(int(workers)):
            next(it)
        pids = [w.pid for w in it._workers]
    print(json.dumps({"pids": pids}), flush=True)
    sys.stdin.readline()


def main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "rank":
        cmd_rank(*args)
        return
    fn = {"cold-new": cmd_cold_new, "cold-old": cmd_cold_old}.get(cmd)
    result = fn(*args) if fn else cmd_warm(cmd.split("-")[1], *args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Datalist start-up and memory at full scale: the mapped column-store cache against the code it replaced.

    .venv/bin/python -m bench.bench_datalist --rows 1000000 [--files 1] [--no-3d] [--ranks 2 --workers 4]
                                             [--dir /work/tmp/bench_datalist] [--skip-old] [--baseline-rev REV]

Generates HumanData files of the real layout (bench/humandata_gen.py; ``--rows`` split over ``--files`` files,
2D + 3D keypoints unless ``--no-3d``) and measures, every figure in a fresh process (bench/datalist_procs.py):

* **cold build** (new): every file read into its mapped cache: seconds, peak RSS, cache size on disk;
* **cold start** (old): the files read by the reader of git revision ``--baseline-rev`` (before this change):
  seconds, peak and final RSS;
* **warm start**: new = open the mapped caches (median of 3); old = ``np.load`` of the old one-``.npz`` cache;
  RSS after opening and after touching every page (not with ``--no-touch``);
* **per-sample lookup**: ``records.entry(i)`` at random indices, after the pages are resident;
* **summed PSS** of ``--ranks`` rank processes x ``--workers`` data-loader workers (fork, persistent) that all touch
  the whole datalist, for the new cache, the old in-memory datalist and no datalist at all (the processes' own
  memory, subtracted to get the datalist's share); configurations 1 x 0, 1 x W and R x W;
* own-format entries (MSCOCO-like, ``--entries`` of them): bytes per record of the old pickled list against the
  columns, and lookup time.

Prints a markdown table and writes everything as JSON to ``<dir>/results.json``. Generated files are kept in
``--dir`` for the next run unless ``--clean``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.datalist_procs import GIB, lookup_us
from bench.humandata_gen import write_humandata

BASELINE_REV = "738374d"  # the last commit with the .npz / pickle caches and the whole-array reader


def run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.datalist_procs", *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summed_pss(mode: str, ranks: int, workers: int, args: list[str]) -> float:
    """GiB of PSS summed over ``ranks`` rank processes and their ``workers`` workers each."""
    procs = [subprocess.Popen([sys.executable, "-m", "bench.datalist_procs", "rank", mode, str(workers), *args],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(ranks)]
    try:
        pids = []
        for p in procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"rank process ({mode}) died")
            pids += [p.pid, *json.loads(line)["pids"]]
        total = 0
        for pid in pids:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            total += int(text.split("\nPss:")[1].split()[0])
        return total * 1024 / GIB
    finally:
        for p in procs:
            p.communicate("\n", timeout=120)


def own_format_entries(n: int) -> dict:
    """Old pickled list vs columns for ``n`` MSCOCO-like entries: bytes per record and lookup time."""
    import tempfile

    from data.colstore import ColumnStore, StoreWriter
    from data.entry_columns import EntryColumns, encode_entries
    from data.formats.base import EntryRecords

    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        fit = None if i % 4 == 3 else {**{k: rng.normal(size=s).astype(np.float32) for k, s in (
            ("root_pose", 3), ("body_pose", 63), ("lhand_pose", 45), ("rhand_pose", 45), ("jaw_pose", 3),
            ("shape", 10), ("expr", 10), ("trans", 3))}, "lhand_valid": True, "rhand_valid": bool(i % 2),
            "face_valid": True, "gender": "neutral"}
        entries.append({
            "img_path": f"/data/MSCOCO/images/train2017/{i:012d}.jpg", "img_shape": (480, 640),
            "bbox": rng.uniform(0, 400, 4).astype(np.float32), "lhand_bbox": rng.uniform(0, 400, 4).astype(np.float32),
            "rhand_bbox": None if i % 3 else rng.uniform(0, 400, 4).astype(np.float32), "face_bbox": None,
            "joint_img": rng.uniform(0, 600, (137, 3)).astype(np.float32), "joint_cam": None,
            "joint_valid": (rng.random((137, 1)) > 0.3).astype(np.float32), "smplx_param": fit,
            "camera": {} if fit is None else {"focal": np.float32([5000, 5000]), "princpt": np.float32([320, 240])},
            "dataset": "MSCOCO", "index": i})
    old = EntryRecords("MSCOCO", "train", entries)
    pickled = len(pickle.dumps({"key": "x", "records": old}, protocol=pickle.HIGHEST_PROTOCOL))
    folder = Path(tempfile.mkdtemp()) / "e.cols"
    with StoreWriter(folder, "k") as w:
        w.commit(encode_entries(old, w))
    new = EntryColumns(ColumnStore.open(folder, "k"))
    size = sum(p.stat().st_size for p in folder.iterdir())
    out = {"entries": n, "pickle_bytes_per_record": pickled / n, "column_bytes_per_record": size / n,
           "lookup_us_old": lookup_us(old), "lookup_us_new": lookup_us(new)}
    shutil.rmtree(folder.parent)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=1)
    p.add_argument("--no-3d", action="store_true")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--dir", default="/work/tmp/bench_datalist")
    p.add_argument("--skip-old", action="store_true", help="new code path only (the old one needs RAM = ranks x size)")
    p.add_argument("--skip-pss", action="store_true")
    p.add_argument("--no-touch", action="store_true",
                   help="warm start without reading every page (lookups then include first-touch page faults)")
    p.add_argument("--baseline-rev", default=BASELINE_REV)
    p.add_argument("--entries", type=int, default=100_000, help="own-format entries for the pickle/columns figures")
    p.add_argument("--clean", action="store_true", help="delete the generated files and caches at the end")
    args = p.parse_args(argv)
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": vars(args), "cpu": os.cpu_count(), "load_before": os.getloadavg()}
    files = []
    for k in range(args.files):
        rows = args.rows // args.files + (k < args.rows % args.files)
        f = root / f"bench_{rows}_{'2d' if args.no_3d else '3d'}_{k}.npz"
        if not f.is_file():
            start = time.perf_counter()
            write_humandata(f.with_suffix(".tmp.npz"), rows, seed=k, with_3d=not args.no_3d)
            f.with_suffix(".tmp.npz").rename(f)
            print(f"generated {f} ({rows} rows) in {time.perf_counter() - start:.0f} s", flush=True)
        files.append(str(f))
    res["annotation_gib"] = sum(Path(f).stat().st_size for f in files) / GIB
    cache = root / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    res["cold_new"] = run("cold-new", str(cache), *files)
    print("cold build (new):", res["cold_new"], flush=True)
    touching = "notouch" if args.no_touch else "touch"
    warm = [run("warm-new", touching if k == 0 else "notouch", str(cache), *files) for k in range(3)]
    res["warm_new"] = {**warm[-1], "seconds": statistics.median(w["seconds"] for w in warm),
                       "seconds_all": [w["seconds"] for w in warm]}
    print("warm start (new):", res["warm_new"], flush=True)
    old_npz = []
    if not args.skip_old:
        res["cold_old"] = run("cold-old", args.baseline_rev, *files)
        print("cold start (old):", res["cold_old"], flush=True)
        from bench.datalist_procs import open_new

        records = open_new(str(cache), files, builder=False)
        for k, part in enumerate(records.parts):  # the old cache layout: one .npz of the same columns
            arrays, meta = part.to_arrays()
            old_npz.append(str(root / f"old_cache_{k}.npz"))
            np.savez(old_npz[-1], **arrays, __cache_key__=np.array("x"), __cache_meta__=np.array(json.dumps(meta)))
        del records, arrays, part
        res["warm_old"] = run("warm-old", touching, *old_npz)
        print("warm start (old):", res["warm_old"], flush=True)
    if not args.skip_pss:
        configs = [(1, 0), (1, args.workers), (args.ranks, args.workers)]
        modes = {"none": ["-"], "new": [str(cache), *files], **({"old": old_npz} if old_npz else {})}
        res["pss"] = {f"{m}_{r}x{w}": summed_pss(m, r, w, a) for m, a in modes.items() for r, w in configs}
        print("summed PSS:", res["pss"], flush=True)
    res["own_format"] = own_format_entries(args.entries)
    res["load_after"] = os.getloadavg()
    (root / "results.json").write_text(json.dumps(res, indent=1))
    report(res, args)
    if args.clean:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def report(res: dict, args: argparse.Namespace) -> None:
    n, size = res["cold_new"]["records"], res["cold_new"]["cache"]
    print(f"\n{n} records, cache {size:.2f} GiB ({size * GIB / n:.0f} B/record), annotations "
          f"{res['annotation_gib']:.2f} GiB; load {res['load_before']} -> {res['load_after']}")
    print("| | old | new |\n|---|---|---|")
    c_new, w_new = res["cold_new"], res["warm_new"]
    c_old, w_old = res.get("cold_old"), res.get("warm_old")

    def fmt(d: dict | None, k: str, f: str = "{:.1f}") -> str:
        return f.format(d[k]) if d else "-"

    print(f"| cold start [s] | {fmt(c_old, 'seconds')} | {c_new['seconds']:.1f} |")
    print(f"| cold peak RSS [GiB] | {fmt(c_old, 'peak', '{:.2f}')} | {c_new['peak']:.2f} |")
    grow_old = f"{c_old['peak'] - c_old['rss_before']:.2f}" if c_old else "-"
    print(f"| cold peak growth above the process before the build [GiB] | {grow_old} | "
          f"{c_new['peak'] - c_new['rss_before']:.2f} ({(c_new['peak'] - c_new['rss_before']) / size:.2f}x the "
          "cache) |")
    print(f"| warm start [s] | {fmt(w_old, 'seconds', '{:.2f}')} | {w_new['seconds']:.3f} (runs: "
          f"{', '.join(f'{t:.3f}' for t in w_new['seconds_all'])}) |")
    grow_old = f"{w_old['rss_open'] - w_old['rss_before']:.2f}" if w_old else "-"
    print(f"| RSS growth of the warm start [GiB] | {grow_old} | {w_new['rss_open'] - w_new['rss_before']:.3f} |")
    if "rss_touched" in w_new:
        print(f"| RSS after touching every page [GiB] | {fmt(w_old, 'rss_touched', '{:.2f}')} | "
              f"{w_new['rss_touched']:.2f} |")
    print(f"| entry(i) [us] | {fmt(w_old, 'lookup_us')} | {w_new['lookup_us']:.1f} |")
    for key, value in res.get("pss", {}).items():
        mode, cfg = key.split("_")
        if mode != "none":
            base = res["pss"][f"none_{cfg}"]
            print(f"| summed PSS {cfg} {mode} [GiB] | total {value:.2f} | datalist share {value - base:.2f} |")
    o = res["own_format"]
    print(f"| own-format bytes/record (pickle -> columns) | {o['pickle_bytes_per_record']:.0f} | "
          f"{o['column_bytes_per_record']:.0f} |")
    print(f"| own-format entry(i) [us] | {o['lookup_us_old']:.1f} | {o['lookup_us_new']:.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())

"""Three threads wired by bounded queues: frames and crops (:class:`~common.video.producer.FrameSource`) ->
network (:class:`~common.video.network.NetworkStage`, this thread) -> outputs
(:class:`~common.video.writers.OutputWriter`). Memory stays flat on long videos.

Failures: an error in any stage stops the others; the frames completed before it are kept, and the stacked npz,
the overlay video and the animation exports are finalised with them (the report's ``error`` says what happened; an
unexpected error's traceback goes to ``OUTPUT/error.log``). Ctrl-C and SIGTERM (turned into KeyboardInterrupt by
the caller) stop the same way.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from common.errors import UserError
from common.video.network import NetworkStage
from common.video.producer import FrameSource
from common.video.report import RunReport
from common.video.writers import OutputWriter


class _Stop(Exception):
    """Raised inside a pipeline thread when another thread asked everybody to stop."""


_END = object()


@dataclass
class _Failure:
    error: BaseException
    trace: str


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                raise _Stop from None


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise _Stop from None


class VideoPipeline:
    """Runs the three stages over one input; :meth:`run` fills the :class:`RunReport`."""

    def __init__(self, source: FrameSource, network: NetworkStage, writer: OutputWriter, report: RunReport,
                 queue_size: int = 10, progress_total: int | None = None):
        self.source, self.network, self.writer, self.report = source, network, writer, report
        self.q_in: queue.Queue = queue.Queue(maxsize=queue_size)
        self.q_out: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop_producer = threading.Event()
        self.stop_all = threading.Event()
        self.writer_error: _Failure | None = None
        self.progress_total = progress_total

    # -- producer thread ----------------------------------------------------------------------------------------
    def _produce(self) -> None:
        try:
            for job in self.source.jobs():
                _put(self.q_in, job, self.stop_producer)
                if self.stop_producer.is_set():
                    return
            _put(self.q_in, _END, self.stop_producer)
        except _Stop:
            return
        except BaseException as err:  # noqa: BLE001 - handed to the main thread, which reports it
            with contextlib.suppress(_Stop):
                _put(self.q_in, _Failure(err, traceback.format_exc()), self.stop_producer)

    # -- network (main thread) ----------------------------------------------------------------------------------
    def _network_loop(self) -> _Failure | None:
        """Frames from the producer through the network to the writer, in order. Returns the producer's failure,
        if any (frames received before it are still processed)."""
        while True:
            item = _get(self.q_in, self.stop_all)
            if item is _END or isinstance(item, _Failure):
                for job in self.network.finish():
                    self._send(job)
                return item if isinstance(item, _Failure) else None
            for job in self.network.add(item):
                self._send(job)

    def _send(self, item: Any) -> None:
        if self.writer_error is not None:
            raise _Stop
        _put(self.q_out, item, self.stop_all)

    # -- writer thread ------------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        try:
            while True:
                job = _get(self.q_out, self.stop_all)
                if job is _END:
                    break
                self.writer.write(job)
        except _Stop:
            pass
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            self.writer_error = _Failure(err, traceback.format_exc())
            self.stop_all.set()
            self.stop_producer.set()
        finally:
            self.writer.close_frames()

    # -- run ----------------------------------------------------------------------------------------------------
    def run(self) -> None:
        rep = self.report
        if self.source.opts.progress:
            from tqdm import tqdm

            self.writer.progress = tqdm(total=self.progress_total or None, unit="frame", desc=self.writer.stem,
                                        mininterval=0.5, dynamic_ncols=True, file=sys.stderr)
        producer = threading.Thread(target=self._produce, name="video-decode-detect", daemon=True)
        writer = threading.Thread(target=self._write_loop, name="video-render-write", daemon=True)
        t0 = time.perf_counter()
        producer.start()
        writer.start()
        failure: _Failure | None = None
        try:
            failure = self._network_loop()
        except _Stop:
            pass
        except BaseException as err:  # noqa: BLE001 - keep what was completed, then report
            failure = _Failure(err, traceback.format_exc())
        finally:
            self.stop_producer.set()
            with contextlib.suppress(_Stop):
                if self.writer_error is None:
                    _put(self.q_out, _END, self.stop_all)
            writer.join()
            producer.join(timeout=30)
            if self.writer_error is not None and failure is None:
                failure = self.writer_error
            try:
                self.writer.finalise()
            except Exception as err:  # noqa: BLE001 - e.g. a full disk: report it with the rest
                failure = failure or _Failure(err, traceback.format_exc())
            rep.wall_s = time.perf_counter() - t0
            if self.writer.progress is not None:
                self.writer.progress.close()
        if failure is not None:
            rep.error = self._describe(failure)

    def _describe(self, failure: _Failure) -> str:
        err = failure.error
        if isinstance(err, KeyboardInterrupt):
            return str(err) or "interrupted"
        if isinstance(err, UserError):
            return str(err)
        log_path = self.report.out_dir / "error.log"
        with contextlib.suppress(OSError):
            log_path.write_text(failure.trace)
        return f"{type(err).__name__}: {err} (traceback in {log_path})"

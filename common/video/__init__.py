"""Video inference as stages, each in its own module; ``main/video_inference.py`` only parses arguments and wires
them, and ``bench/bench_video.py`` and the tests use the same stages.

* :mod:`~common.video.schedule`: the detector on key frames only, boxes interpolated in between (bisection where
  people enter, leave or move fast);
* :mod:`~common.video.producer`: decoding, the schedule, box selection as the original demo, track ids, crops;
* :mod:`~common.video.network`: batched SMPLer-X over frames and people, smoothing, scene placement;
* :mod:`~common.video.scene`: the frame's one camera: rigid placement for the exports, the overlay's projection;
* :mod:`~common.video.writers`: per-frame files, overlay video, stacked npz, animation exports;
* :mod:`~common.video.pipeline`: the three threads and their failure handling;
* :mod:`~common.video.report`: options, per-frame records, stage timers, the run report.
"""

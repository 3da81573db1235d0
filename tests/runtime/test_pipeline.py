import _thread
import json
import signal
import textwrap
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_bus.runtime.config import RunConfig
from edge_bus.runtime.pipeline import Pipeline
from edge_bus.runtime.sinks import JsonlSink, make_sinks
from edge_bus.runtime.sources import SyntheticSource, open_source

from fakes import FlakyLiveSource, GlitchyLiveSource, ListSource, StallingLiveSource, fake_model, run_isolated


def cfg(tmp_path: Path, **kw) -> RunConfig:
    base = dict(source="unused", classifier="unused", out=str(tmp_path / "out"), batch=4, max_wait_ms=5.0, queue_size=4)
    base.update(kw)
    return RunConfig(**base)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_video(path: Path, n: int, size=(96, 72)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    assert writer.isOpened()
    for i in range(n):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.putText(frame, str(i), (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.timeout(60)
def test_unpaced_synthetic_source_is_read_like_a_file(tmp_path):
    """synthetic://?fps=0 makes a frame when the pipeline asks for one: a slow model loses none,
    where a live source producing frames as fast as it can would drop nearly all of them."""
    source = open_source("synthetic://?fps=0&size=64x48&frames=30")
    assert not source.live and open_source("synthetic://?fps=30&size=64x48").live
    summary = Pipeline(cfg(tmp_path, queue_size=2, batch=2), source=source,
                       models=[fake_model("segmentation", delay_s=0.02)]).run()
    assert summary["frames"] == 30 and summary["drops"] == 0


@pytest.mark.timeout(60)
def test_file_source_loses_no_frame_and_jsonl_has_every_frame(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 37)
    c = cfg(tmp_path, queue_size=2, sinks=["masks", "jsonl", "overlay"])
    models = [fake_model("classification", delay_s=0.01), fake_model("segmentation", delay_s=0.01)]
    summary = Pipeline(c, source=open_source(str(video)), models=models).run()
    assert summary["frames"] == 37 and summary["drops"] == 0 and summary["bad_frames"] == 0
    records = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(37))
    r = records[0]
    assert r["source"] == "clip.mp4" and r["class"] == "benign" and r["shape"] == [72, 96]
    assert set(r["latency_ms"]) == {"decode", "preprocess", "inference", "postprocess", "total"}
    assert r["t_done"] >= r["t_capture"]
    # lesion at model pixels x 4..12, y 8..16 of 32 -> frame pixels scaled by 96/32 and 72/32
    # (the logits are scaled bilinearly, so the block's corners come out slightly rounded)
    assert r["lesion"]["box"] == [12, 18, 24, 18] and 0.95 * 24 * 18 <= r["lesion"]["area_px"] <= 24 * 18
    mask = cv2.imread(str(tmp_path / "out" / r["mask_file"]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (72, 96) and int((mask > 0).sum()) == r["lesion"]["area_px"]
    cap = cv2.VideoCapture(str(tmp_path / "out" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 37
    cap.release()
    assert max(models[0].backend.batches) <= 4


@pytest.mark.timeout(60)
def test_folder_source_names_each_frame_by_file(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((40, 50), 30 * i, np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    c = cfg(tmp_path)
    summary = Pipeline(c, source=open_source(str(folder)), models=[fake_model()], sinks=make_sinks(["jsonl"], c.out)).run()
    assert summary["frames"] == 5 and summary["bad_frames"] == 1
    assert "broken.png" in summary["last_error"]
    records = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert sorted(r["source"] for r in records) == [f"f{i}.png" for i in range(5)]


@pytest.mark.timeout(60)
def test_bad_frames_are_counted_never_fatal(tmp_path):
    good = np.full((40, 50, 3), 100, np.uint8)
    images = [good, np.zeros((0, 0), np.uint8), good, np.ones((40, 50), np.int32), np.ones((40, 50, 5), np.uint8),
              None, good, "not an image", good]
    c = cfg(tmp_path)
    summary = Pipeline(c, source=ListSource(images), models=[fake_model()]).run()
    assert summary["frames"] == 4 and summary["bad_frames"] == 5
    records = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [r["frame"] for r in records] == [0, 2, 6, 8]


@pytest.mark.timeout(60)
def test_live_source_faster_than_inference_drops_and_keeps_latency_bounded(tmp_path):
    n, delay = 150, 0.02
    source = SyntheticSource("synthetic://?fps=1000", fps=1000.0, size=(64, 64), frames=n, pool=2)
    c = cfg(tmp_path, batch=1, queue_size=2, max_wait_ms=0.0)
    model = fake_model(delay_s=delay)
    summary = Pipeline(c, source=source, models=[model]).run()
    assert summary["drops"] > 0
    assert summary["frames"] + summary["drops"] == n  # every frame is either processed or counted as dropped
    # with a queue of 2 a frame waits for at most ~3 inferences; 10x margin for a loaded CI machine
    assert summary["latency_ms"]["total"]["p99"] < 10 * 4 * delay * 1000
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == summary["frames"]


@pytest.mark.timeout(60)
def test_lost_live_source_is_reopened_with_backoff(tmp_path):
    source = FlakyLiveSource([3, 4], fail_reopens=1)
    c = cfg(tmp_path, reconnect_attempts=3, reconnect_backoff_s=0.01)
    summary = Pipeline(c, source=source, models=[fake_model()]).run()
    assert summary["frames"] == 7 and summary["reconnects"] == 1
    # 2 reopen calls to come back (1 failure + success), then 3 failing attempts before giving up
    assert source.reopen_calls == 2 + 3
    assert "reconnect" in summary["ended_because"]
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == 7


@pytest.mark.timeout(60)
def test_source_that_never_comes_back_ends_cleanly(tmp_path):
    source = FlakyLiveSource([2], fail_reopens=0)
    c = cfg(tmp_path, reconnect_attempts=2, reconnect_backoff_s=0.01)
    summary = Pipeline(c, source=source, models=[fake_model()]).run()
    assert summary["frames"] == 2 and summary["reconnects"] == 0 and source.reopen_calls == 2
    assert "gave up" in summary["last_error"]
    assert summary["source_lost"] is True  # `edge-bus run` exits 3 on it: a service manager restarts the run


@pytest.mark.timeout(60)
def test_a_file_source_that_ends_is_not_lost(tmp_path):
    summary = Pipeline(cfg(tmp_path), source=ListSource([np.zeros((40, 50), np.uint8)] * 3), models=[fake_model()]).run()
    assert summary["ended_because"] == "end of source" and summary["source_lost"] is False


@pytest.mark.timeout(60)
def test_failed_live_reads_are_bad_frames_until_too_many_in_a_row(tmp_path):
    img = "frame"  # any non-None entry is a good read
    # 1 and 2 failures in a row: tolerated (max_failed_reads=2), counted as bad frames, no reconnect
    source = GlitchyLiveSource([img, img, None, img, None, None, img])
    summary = Pipeline(cfg(tmp_path, max_failed_reads=2), source=source, models=[fake_model()]).run()
    assert summary["frames"] == 4 and summary["bad_frames"] == 3 and source.reopen_calls == 0
    assert "read failed" in summary["last_error"]
    # 3 in a row: the third reopens the source
    source = GlitchyLiveSource([img, None, None, None, img])
    c = cfg(tmp_path / "b", max_failed_reads=2, reconnect_backoff_s=0.0)
    summary = Pipeline(c, source=source, models=[fake_model()]).run()
    assert summary["frames"] == 2 and summary["bad_frames"] == 2 and source.reopen_calls == 1
    assert summary["reconnects"] == 1 and summary["source_lost"] is False


@pytest.mark.timeout(60)
def test_live_frames_wait_for_at_most_about_two_inferences(tmp_path):
    """A live source faster than a slow model: the prepare stage takes a free buffer before it takes
    frames, and two buffers circulate, so a frame waits for the inference under way and then its own.
    (Taking the batch first, with three buffers, frames waited about four inferences.)"""
    delay = 0.1
    source = SyntheticSource("synthetic://?fps=400", fps=400.0, size=(64, 64), pool=2)
    c = cfg(tmp_path, batch=4, queue_size=4, max_wait_ms=5.0, max_frames=48)
    model = fake_model(delay_s=delay)
    summary = Pipeline(c, source=source, models=[model]).run()
    assert summary["frames"] == 48 and summary["drops"] > 0
    assert summary["latency_ms"]["total"]["p50"] < 3 * delay * 1000
    assert summary["fps"] > 0.5 * 4 / delay  # and the model is kept busy: batches of 4 back to back


@pytest.mark.timeout(60)
def test_keyboard_interrupt_drains_flushes_and_summarizes(tmp_path):
    fired = threading.Event()

    def interrupt_on_5th_batch(calls: int) -> None:
        if calls == 5 and not fired.is_set():
            fired.set()
            _thread.interrupt_main()  # Ctrl-C delivered to the main thread, which runs Pipeline.run

    source = SyntheticSource("synthetic://?fps=200", fps=200.0, size=(64, 64), pool=2)  # never ends by itself
    c = cfg(tmp_path, batch=2, sinks=["jsonl", "overlay"])
    pipeline = Pipeline(c, source=source, models=[fake_model(delay_s=0.01, on_call=interrupt_on_5th_batch)])
    summary = pipeline.run()
    assert fired.is_set() and summary["ended_because"] == "interrupted"
    records = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert len(records) == summary["frames"] >= 10  # every processed frame was flushed
    assert all(isinstance(s, JsonlSink) is False or s._file.closed for s in pipeline.sinks)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
    cap.release()


@pytest.mark.timeout(60)
def test_stop_event_mid_run(tmp_path):
    holder = {}

    def stop_on_3rd(calls: int) -> None:
        if calls == 3:
            holder["p"].stop()

    source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)
    c = cfg(tmp_path, batch=1)
    holder["p"] = Pipeline(c, source=source, models=[fake_model(on_call=stop_on_3rd)])
    summary = holder["p"].run()
    assert summary["ended_because"] == "stopped" and summary["frames"] >= 3
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == summary["frames"]


@pytest.mark.timeout(60)
def test_roi_results_are_in_full_frame_coordinates(tmp_path):
    frame = np.zeros((100, 200), np.uint8)
    c = cfg(tmp_path, roi="40,20,64,32", segmenter="x", classifier=None)
    summary = Pipeline(c, source=ListSource([frame] * 3), models=[fake_model("segmentation")]).run()
    assert summary["roi"] == [40, 20, 64, 32]
    r = read_jsonl(tmp_path / "out" / "results.jsonl")[0]
    # lesion x 4..12, y 8..16 of 32 -> ROI scale 2 x 1 -> frame x 40+8, y 20+8, 16 x 8
    assert r["roi"] == [40, 20, 64, 32] and r["lesion"]["box"] == [48, 28, 16, 8]


class MemorySampler:
    """A sink that samples traced Python memory every `every` frames (a fixed number of samples)."""

    name = "memory"

    def __init__(self, every: int) -> None:
        self.every, self.seen, self.samples = every, 0, []

    def write(self, result) -> None:
        import tracemalloc

        self.seen += 1
        if self.seen % self.every == 0:
            self.samples.append(tracemalloc.get_traced_memory()[0])

    def close(self) -> None:
        pass


@pytest.mark.timeout(60)
def test_max_frames_and_memory_flat(tmp_path):
    import tracemalloc

    source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)
    c = cfg(tmp_path, max_frames=1000, sinks=["jsonl"])
    tracemalloc.start()
    try:
        pipeline = Pipeline(c, source=source, models=[fake_model()])
        pipeline.open()
        sampler = MemorySampler(every=100)
        pipeline.sinks.append(sampler)
        summary = pipeline.run()
    finally:
        tracemalloc.stop()
    assert summary["frames"] == 1000 and summary["ended_because"] == "max_frames"
    assert len(sampler.samples) == 10  # always enough samples: taken per frame, not per second
    assert sampler.samples[-1] < sampler.samples[1] + 2_000_000  # does not grow with the number of frames


class RecordingSink:
    """Counts writes; a write after close() is the race the pipeline must not have."""

    name = "recording"

    def __init__(self) -> None:
        self.written = 0
        self.closed = False
        self.late_writes = 0

    def write(self, result) -> None:
        if self.closed:
            self.late_writes += 1
        self.written += 1

    def close(self) -> None:
        self.closed = True


@pytest.mark.timeout(120)
def test_repeated_interrupts_never_close_sinks_under_the_post_stage(tmp_path):
    # Ctrl-C used to reach the main thread inside Thread.join, which (CPython 3.11) could mark the
    # still-running post stage as stopped: the sinks were then closed under it.
    for run in range(8):
        fired = threading.Event()

        def interrupt_on_2nd(calls: int, fired=fired) -> None:
            if calls == 2 and not fired.is_set():
                fired.set()
                _thread.interrupt_main()

        sink = RecordingSink()
        source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)
        pipeline = Pipeline(cfg(tmp_path, batch=2), source=source, sinks=[sink],
                            models=[fake_model(delay_s=0.002, on_call=interrupt_on_2nd)], progress_interval_s=0.01)
        summary = pipeline.run()
        assert fired.is_set() and summary["ended_because"] == "interrupted", run
        assert sink.closed and sink.late_writes == 0 and sink.written == summary["frames"] == pipeline.stats.frames
        assert all(e.is_set() for e in pipeline._done.values())  # every stage really left


@pytest.mark.timeout(60)
def test_real_sigint_drains_and_the_handler_is_restored(tmp_path):
    import os
    import signal

    before = signal.getsignal(signal.SIGINT)
    source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)

    def sigint_on_3rd(calls: int) -> None:
        if calls == 3:
            os.kill(os.getpid(), signal.SIGINT)

    summary = Pipeline(cfg(tmp_path, batch=1), source=source, models=[fake_model(on_call=sigint_on_3rd)]).run()
    assert summary["ended_because"] == "interrupted" and summary["frames"] >= 3
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == summary["frames"]
    assert signal.getsignal(signal.SIGINT) is before


# The SIGTERM tests send a real SIGTERM to their own process: they run in a subprocess, so that a
# regression (no handler, or a handler left behind) kills that process and not the test run.
SIGNAL_PRELUDE = """
    import json, os, signal, sys, time
    from pathlib import Path
    import numpy as np
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime import pipeline as pipeline_module
    from edge_bus.runtime.pipeline import Pipeline
    from edge_bus.runtime.sources import SyntheticSource
    from fakes import ListSource, fake_model

    def cfg(out, **kw):
        base = dict(source="unused", classifier="unused", out=str(out), batch=4, max_wait_ms=5.0, queue_size=4)
        base.update(kw)
        return RunConfig(**base)

    def report(**values):
        print("RESULT " + json.dumps(values))
"""


def isolated(code: str) -> dict:
    """Run SIGNAL_PRELUDE + code in a subprocess; the dict it reported (fails on a crash or a signal death)."""
    done = run_isolated(textwrap.dedent(SIGNAL_PRELUDE) + textwrap.dedent(code))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.timeout(60)
def test_sigterm_drains_flushes_and_the_handler_is_restored(tmp_path):
    """systemd's and `docker stop`'s SIGTERM is handled like Ctrl-C (in a container Python is PID 1,
    which ignores a signal it has no handler for)."""
    got = isolated(f"""
        import cv2
        out = Path({str(tmp_path / "out")!r})
        before = signal.getsignal(signal.SIGTERM)
        source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)

        def sigterm_on_3rd(calls):
            if calls == 3:
                os.kill(os.getpid(), signal.SIGTERM)

        c = cfg(out, batch=1, sinks=["jsonl", "overlay"])
        summary = Pipeline(c, source=source, models=[fake_model(delay_s=0.005, on_call=sigterm_on_3rd)]).run()
        cap = cv2.VideoCapture(str(out / "overlay.mp4"))
        report(ended=summary["ended_because"], frames=summary["frames"],
               lines=len((out / "results.jsonl").read_text().splitlines()),
               video=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), restored=signal.getsignal(signal.SIGTERM) is before)
    """)
    assert got["ended"] == "terminated" and got["frames"] >= 3
    assert got["lines"] == got["frames"]
    assert got["video"] == got["frames"]  # the video was finished
    assert got["restored"]


def test_sigterm_while_models_load_interrupts_like_ctrl_c(tmp_path):
    got = isolated(f"""
        before = signal.getsignal(signal.SIGTERM)

        def load_model(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)  # `docker stop` during a long engine load
            return fake_model()

        pipeline_module.load_model = load_model
        try:
            Pipeline(cfg({str(tmp_path / "out")!r}), source=ListSource([])).open()
            report(raised=None)
        except KeyboardInterrupt as exc:
            report(raised=type(exc).__name__, signum=getattr(exc, "signum", None),
                   restored=signal.getsignal(signal.SIGTERM) is before)
    """)
    assert got["raised"] == "Terminated" and got["signum"] == signal.SIGTERM  # a KeyboardInterrupt: exit 143
    assert got["restored"]


def test_sigterm_between_open_and_run_is_not_lost(tmp_path):
    """The handler is installed from the end of open() on: a SIGTERM before run() stops the run at once
    (it had its default action there: death outside a container, nothing at all as PID 1 in one)."""
    got = isolated(f"""
        before = signal.getsignal(signal.SIGTERM)
        source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)
        pipeline = Pipeline(cfg({str(tmp_path / "out")!r}, batch=1), source=source, models=[fake_model()])
        pipeline.open()
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while `edge-bus run` prints the source line
        time.sleep(0.2)
        summary = pipeline.run()
        report(ended=summary["ended_because"], restored=signal.getsignal(signal.SIGTERM) is before)
    """)
    assert got["ended"] == "terminated" and got["restored"]


def test_a_previous_handler_set_outside_python_is_restored_as_the_default(tmp_path):
    """signal.signal() returns None for a handler installed from C, and signal.signal(n, None) raises
    TypeError: such a signal gets SIG_DFL back."""
    got = isolated(f"""
        real = signal.signal
        calls = []

        def from_c(signum, handler):  # the first SIGTERM handler found was set from C
            previous = real(signum, handler)
            calls.append(signum)
            return None if calls.count(signal.SIGTERM) == 1 and signum == signal.SIGTERM else previous

        signal.signal = from_c
        source = ListSource([np.zeros((40, 50), np.uint8)] * 3)
        summary = Pipeline(cfg({str(tmp_path / "out")!r}), source=source, models=[fake_model()]).run()
        signal.signal = real
        report(frames=summary["frames"], default=signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
               sigint_restored=signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """)
    assert got == {"frames": 3, "default": True, "sigint_restored": True}


@pytest.mark.timeout(60)
def test_a_stalled_live_source_is_reopened_after_no_frame_timeout_s(tmp_path):
    """A read that blocks until its timeout (a stalled RTSP stream: 5 s) is one failed read: counting
    reads, max_failed_reads 5 waited 6 timeouts; no frame for no_frame_timeout_s reopens at once."""
    img = "frame"
    source = StallingLiveSource([img, None, img, img], stall_s=0.3)
    c = cfg(tmp_path, max_failed_reads=5, no_frame_timeout_s=0.2, reconnect_backoff_s=0.0)
    summary = Pipeline(c, source=source, models=[fake_model()]).run()
    assert source.reopen_calls == 1 and summary["reconnects"] == 1 and summary["bad_frames"] == 0
    assert summary["frames"] == 3 and summary["source_lost"] is False
    # quick failures within the time window are still tolerated, as bad frames
    source = StallingLiveSource([img, None, img], stall_s=0.0)
    summary = Pipeline(cfg(tmp_path / "b", max_failed_reads=5, no_frame_timeout_s=5.0), source=source,
                       models=[fake_model()]).run()  # fmt: skip
    assert source.reopen_calls == 0 and summary["bad_frames"] == 1 and summary["frames"] == 2


def test_allow_unchecked_is_passed_to_load_model(tmp_path, monkeypatch):
    from edge_bus.runtime import pipeline as pipeline_module

    seen = []

    def load_model(role, path, backend, options, *, allow_unchecked=False):
        seen.append(allow_unchecked)
        return fake_model()

    monkeypatch.setattr(pipeline_module, "load_model", load_model)
    Pipeline(cfg(tmp_path, allow_unchecked=True), source=ListSource([]), sinks=[]).open()
    Pipeline(cfg(tmp_path), source=ListSource([]), sinks=[]).open()
    assert seen == [True, False]


@pytest.mark.timeout(60)
def test_second_interrupt_abandons_the_drain(tmp_path):
    holder = {}

    def interrupts(calls: int) -> None:
        p = holder["p"]
        if calls == 2:
            _thread.interrupt_main()
            assert p._stop.wait(30)  # frames are still queued when the drain starts
        elif calls == 3:
            _thread.interrupt_main()
            assert p._abort.wait(30)

    source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)
    holder["p"] = Pipeline(cfg(tmp_path, batch=1, queue_size=8), source=source, models=[fake_model(on_call=interrupts)])
    summary = holder["p"].run()
    assert summary["ended_because"] == "interrupted twice (queue abandoned)"
    assert summary["frames"] <= 3 and len(read_jsonl(tmp_path / "out" / "results.jsonl")) == summary["frames"]


@pytest.mark.timeout(60)
def test_drain_and_stage_exit_are_bounded_when_the_backend_hangs(tmp_path, caplog):
    import time

    release = threading.Event()
    holder = {}

    def hang_on_2nd(calls: int) -> None:
        if calls == 2:
            holder["p"].stop()
            release.wait(30)  # a wedged backend call

    source = SyntheticSource("synthetic://?fps=0", fps=0.0, size=(64, 64), pool=2)
    holder["p"] = Pipeline(cfg(tmp_path, batch=1), source=source, models=[fake_model(on_call=hang_on_2nd)],
                           drain_timeout_s=0.3, stage_exit_s=0.3)
    t0 = time.monotonic()
    try:
        summary = holder["p"].run()
    finally:
        release.set()
    assert time.monotonic() - t0 < 20  # 0.3 s drain + 0.3 s stage exit, with room for a loaded machine
    assert summary["ended_because"] == "stopped" and summary["frames"] == 1
    assert "drain took longer" in caplog.text and "infer" in caplog.text
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == 1


@pytest.mark.timeout(60)
def test_benchmark_call_runs_without_sinks_and_reports_stage_latencies(tmp_path):
    images = [np.full((40, 50), 10 * i, np.uint8) for i in range(9)]
    c = RunConfig(source="unused", classifier="x", segmenter="y", batch=4, max_wait_ms=5.0, sinks=[])
    pipeline = Pipeline(c, source=ListSource(images), models=[fake_model(), fake_model("segmentation")],
                        handle_sigint=False)
    summary = pipeline.run()
    assert list(tmp_path.iterdir()) == [] and pipeline.sinks == []
    assert summary["frames"] == 9 and summary["fps"] > 0 and summary["ended_because"] == "end of source"
    for stage in ("decode", "preprocess", "inference", "postprocess", "total"):
        lat = summary["latency_ms"][stage]
        assert set(lat) == {"p50", "p90", "p99", "mean"} and 0 <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert pipeline.summary()["elapsed_s"] == summary["elapsed_s"]  # frozen when streaming ended


def test_write_summary_is_atomic_json(tmp_path):
    from edge_bus.runtime.pipeline import write_summary

    path = write_summary({"frames": 3, "fps": 1.5}, tmp_path / "out")
    assert json.loads(path.read_text()) == {"frames": 3, "fps": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left
    assert write_summary({}, None) is None

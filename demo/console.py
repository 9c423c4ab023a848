"""What the demo prints while it runs: one line when a step starts and one with its wall / CPU time when it ends, and
for every training run one line naming the run, its config and its log file, then a labelled progress bar. The raw
Trainer log dicts and the libraries' INFO logs of a run go to that run's log file, not to the console."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class StepTiming:
    """Wall-clock and CPU time of one demo step (CPU: this process and its finished children)."""

    number: int
    title: str
    wall_s: float
    cpu_s: float


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory so far (MB): this process, and the largest of its finished child processes."""
    # ru_maxrss is in kilobytes on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process_mb": own, "largest_child_mb": children}


def minutes(seconds: float) -> str:
    """`m:ss`."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class StepClock:
    """Prints a line when a step starts and one with its wall / CPU time when it ends; keeps the timings."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.start = time.perf_counter()
        self.timings: list[StepTiming] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def step(self, number: int, title: str) -> Iterator[None]:
        print(f"\n[demo {number}/{self.total_steps}] {title} ...", flush=True)
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield
        timing = StepTiming(number, title, time.perf_counter() - wall, cpu_seconds() - cpu)
        self.timings.append(timing)
        print(
            f"[demo {number}/{self.total_steps}] {title}: done in {timing.wall_s:.1f} s "
            f"(CPU {timing.cpu_s:.1f} s; {minutes(self.elapsed())} since start)",
            flush=True,
        )


class LabelledProgress(TrainerCallback):
    """A progress bar for one training run, named after the run, with the latest training loss beside it (the
    Trainer's own bar is switched off with `disable_tqdm`, which would show neither)."""

    def __init__(self, label: str):
        self.label = label
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            # Into a log file (not a terminal) every redraw is a line: redraw rarely there.
            interval = 0.1 if sys.stderr.isatty() else 30.0
            self.bar = tqdm(total=state.max_steps, desc=self.label, unit="step", dynamic_ncols=True, file=sys.stderr,
                            mininterval=interval)  # fmt: skip

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def training_run_output(label: str, log_file: Path, command: str) -> Iterator[list[TrainerCallback]]:
    """Run one training run quietly: print which run it is, where its config and log are, then show its labelled
    progress bar; the Trainer's log dicts (printed to stdout with `disable_tqdm`) and every library's INFO logs go
    to `log_file`. Yields the callbacks to hand to the Trainer."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"  {label}: {command}  (log: {log_file})", flush=True)
    root = logging.getLogger()
    with open(log_file, "a", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)  # one stream for logs and printed dicts: they interleave in order
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(stream):
                yield [LabelledProgress(label)]
        finally:
            root.removeHandler(handler)

"""Peak resident memory of this process, per stage: read the high-water mark, then reset it
(Linux: ``/proc/self/status`` VmHWM and ``/proc/self/clear_refs``; elsewhere the peak since
the start, from ``getrusage``, which cannot be reset). Worker processes (DataLoader workers)
are not counted."""

import resource
import sys


def rss_mb() -> float:
    """The process's current RSS in MiB (Linux; elsewhere the peak since the start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """The process's peak RSS in MiB since the start or the last ``reset_peak``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS (Linux); returns whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class StagePeaks:
    """``mark(stage)`` charges the peak RSS since the previous mark to ``stage`` (the max over
    its calls) and starts a new interval; ``as_dict()`` gives {stage: MiB} and the overall peak."""

    def __init__(self):
        self.peaks: dict = {}
        self.resettable = reset_peak()

    def mark(self, stage: str) -> None:
        self.peaks[stage] = round(max(self.peaks.get(stage, 0.0), peak_rss_mb()), 1)
        if self.resettable:
            reset_peak()

    def as_dict(self) -> dict:
        return {"stage_peak_rss_mb": dict(self.peaks), "peak_rss_mb": max(self.peaks.values(), default=round(peak_rss_mb(), 1)), "per_stage_reset": self.resettable}


__all__ = ["StagePeaks", "peak_rss_mb", "reset_peak", "rss_mb"]

"""A wall clock the runner can step on the controller alone: libfaketime, driven by a file.

The controller is started with ``LD_PRELOAD`` of libfaketime and ``FAKETIME_TIMESTAMP_FILE``
pointing at a file that holds an offset (``+0``, ``-3600``); ``FAKETIME_NO_CACHE=1`` makes
every clock read see a rewrite of that file at once, and ``FAKETIME_DONT_FAKE_MONOTONIC=1``
leaves ``CLOCK_MONOTONIC`` true, so the step is what an NTP correction does to a host: the wall
clock jumps, the monotonic clock does not. Workers, Redis and the runner keep the true time.

Debian / Ubuntu ship the library in the ``faketime`` package (``apt-get install faketime``).

libfaketime 0.9.10 (Debian 12's) breaks ``time.sleep`` on Python >= 3.11 when it leaves the
monotonic clock alone: Python sleeps with ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)``,
libfaketime shifts that deadline as if it were wall time and the kernel answers EINVAL
(wolfcw/libfaketime#426) — the controller would die of the test harness, not of the step. So
a ten-line shim, compiled here with the system's C compiler and preloaded before libfaketime,
sends every non-wall-clock ``clock_nanosleep`` straight to the kernel. Without libfaketime or a
C compiler the clock-step fault is left out, and the run says why in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess

LIBRARY_PATHS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1")
MISSING = "libfaketime is not installed (apt-get install faketime)"
NO_COMPILER = "no C compiler (cc) to build the clock_nanosleep shim libfaketime 0.9.10 needs"
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req,
                    struct timespec *rem) {
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (clock_id != CLOCK_REALTIME) {
        long failed = syscall(SYS_clock_nanosleep, clock_id, flags, req, rem);
        return failed ? errno : 0;
    }
    if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock_id, flags, req, rem);
}
"""


def find_library() -> str | None:
    """The libfaketime shared object, or None when it is not installed."""
    override = os.environ.get("FLEET_CHAOS_LIBFAKETIME")
    for path in ((override,) if override else LIBRARY_PATHS):
        if os.path.isfile(path):
            return path
    return None


def build_shim(workdir: str) -> str | None:
    """Compile the clock_nanosleep shim into ``workdir``; None if that is not possible."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, shim = os.path.join(workdir, "nanosleep-shim.c"), os.path.join(workdir,
                                                                           "nanosleep-shim.so")
    with open(source, "w") as handle:
        handle.write(SHIM_C)
    done = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", shim, source, "-ldl"],
                          capture_output=True, timeout=120)
    return shim if done.returncode == 0 else None


def prepare(workdir: str) -> FakeClock | str:
    """A FakeClock whose file lives in ``workdir``, or the one-line reason there is none."""
    library = find_library()
    if library is None:
        return MISSING
    shim = build_shim(workdir)
    if shim is None:
        return NO_COMPILER
    return FakeClock(f"{shim} {library}", os.path.join(workdir, "faketime.rc"))


class FakeClock:
    """The controller's clock offset, held in ``path`` (seconds, cumulative).

    ``preload`` is the ``LD_PRELOAD`` value: the shim, then libfaketime.
    """

    def __init__(self, preload: str, path: str) -> None:
        self.preload = preload
        self.path = path
        self.offset_s = 0
        self._write()

    def environment(self) -> dict[str, str]:
        """What the controller's process needs to see this clock."""
        return {"LD_PRELOAD": self.preload, "FAKETIME_TIMESTAMP_FILE": self.path,
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def step(self, delta_s: int) -> None:
        """Jump the controller's wall clock by ``delta_s`` (it reads the file on every call)."""
        self.offset_s += delta_s
        self._write()

    def _write(self) -> None:
        # Write and rename, so a clock read never sees a half-written offset.
        temp = self.path + ".tmp"
        with open(temp, "w") as handle:
            handle.write(f"{self.offset_s:+d}\n")
        os.replace(temp, self.path)

"""What a test needs from the platform, said once: markers that skip a test where
it cannot apply, each with the reason (shown by pytest -rs)."""

import ctypes
import multiprocessing
import sys

import pytest

WINDOWS = sys.platform == "win32"


def _under_wine() -> bool:
    if not WINDOWS:
        return False
    try:
        return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")
    except OSError:  # pragma: no cover
        return False


WINE = _under_wine()
HAS_FORK = "fork" in multiprocessing.get_all_start_methods()


def posix_only(why: str) -> pytest.MarkDecorator:
    """A test of something Windows does not have (signals to other processes, mode
    bits, uids, FIFOs, SIGBUS, rlimits, make and gcc for the C library's build)."""
    return pytest.mark.skipif(WINDOWS, reason=f"not on Windows: {why}")


def needs_fork(why: str = "it forks") -> pytest.MarkDecorator:
    return pytest.mark.skipif(not HAS_FORK, reason=f"no fork() here: {why}")


def not_under_wine(why: str) -> pytest.MarkDecorator:
    """Windows behaviour that wine does not reproduce; it runs on real Windows
    (the hosted workflow)."""
    return pytest.mark.skipif(WINE, reason=f"not under wine: {why}")

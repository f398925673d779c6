"""Test session setup: fake CPU devices for the multi-device step, import path, markers."""

import atexit
import os
import shutil
import sys
import tempfile

# Must happen before jax is imported anywhere: two fake CPU devices let tests exercise the
# mapped train step exactly as it runs across GPUs.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Runs that tests start use the default persistent compilation cache (config.train.compilation_cache
# 'auto'): keep it, and any other per-user cache, out of the home directory.
_TEST_CACHE_HOME = tempfile.mkdtemp(prefix="mofgseg-test-cache-")
os.environ["XDG_CACHE_HOME"] = _TEST_CACHE_HOME
atexit.register(shutil.rmtree, _TEST_CACHE_HOME, ignore_errors=True)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared")
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, skipped unless --runslow")
    # Orbax finishes checkpoint I/O on a thread with its own asyncio loop; on a slow CPU a callback
    # can reach that loop after it closed, and Python reports it when the object is collected,
    # during whichever later test is running (twice in a full run on an AVX2 host, never alone).
    # Orbax's bookkeeping, not a test's failure: the checkpoint tests check what was written.
    config.addinivalue_line(
        "filterwarnings", "ignore:(?s).*Event loop is closed:pytest.PytestUnraisableExceptionWarning")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run slow tests")


def pytest_collection_modifyitems(config, items):
    import pytest

    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)

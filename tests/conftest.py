import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))

# a skip must not hide a failure: the session fails on skips outside the allowed reasons
from _skip_guard import (  # noqa: E402,F401
    pytest_addoption, pytest_collectreport, pytest_configure, pytest_runtest_logreport, pytest_sessionfinish,
    pytest_sessionstart, pytest_terminal_summary,
)

# tqdm's default write lock is a multiprocessing semaphore, shared by every process forked after
# it was made.  mutmut (benchmarks/mutation.py) forks one child per mutant from a process that has
# already drawn progress bars; one child stopped while holding that semaphore left it at 0, and
# every later child hung at its first bar until mutmut's wall timeout (recorded as a "timeout",
# i.e. killed, survivors included).  Each test process gets its own thread lock and no monitor thread.
import threading  # noqa: E402

import tqdm  # noqa: E402

tqdm.tqdm.set_lock(threading.RLock())
tqdm.tqdm.monitor_interval = 0

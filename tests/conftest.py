import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))

# a skip must not hide a failure: the session fails on skips outside the allowed reasons
from _skip_guard import (  # noqa: E402,F401
    pytest_addoption, pytest_collectreport, pytest_configure, pytest_runtest_logreport, pytest_sessionfinish,
    pytest_sessionstart, pytest_terminal_summary,
)

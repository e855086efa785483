"""Runs CPython's own thread-pool tests of ``concurrent.futures`` against ``taskrunner.Executor``.

Run as a script by ``test_executor_cpython.py``, in a fresh interpreter, so
that the patching below cannot leak into other tests:

    python cpython_futures_suite.py RESULT_FILE LEAVE_OUT [CLASSES]

LEAVE_OUT is a JSON list of "Class.test" names not to run; CLASSES, a JSON
list of the names of the only test classes to run.

It finds the running interpreter's ``test.test_concurrent_futures`` (a package
from CPython 3.12, one module before), makes ``taskrunner.Executor`` the
executor of its thread-pool test classes, runs them with ``unittest`` (the
report goes to stderr) and writes a JSON object to RESULT_FILE: the outcome
(see ``_summary``), or ``{"missing": reason}`` if there is no such suite to run.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import sys
import unittest
from types import ModuleType
from typing import Any, Optional

SUITE = "test.test_concurrent_futures"
# A hung test shows where it hangs (every thread's stack on stderr), and the run
# ends, before the caller's own time limit.
TIME_LIMIT = 200.0

# The modules of the package that hold thread-pool test classes (all of them
# are in the one module of older CPythons).
THREAD_POOL_MODULES = (
    "test_thread_pool",
    "test_as_completed",
    "test_wait",
    "test_shutdown",
    "test_init",
)


def _locate() -> tuple[type, list[ModuleType]]:
    """The suite's thread-pool mixin class and the modules to take test classes from.

    Raises:
        LookupError: with the reason, when this interpreter has no such suite.
    """
    try:
        suite = importlib.import_module(SUITE)
        if hasattr(suite, "__path__"):  # a package: CPython 3.12 and later
            mixin_home = importlib.import_module(f"{SUITE}.util")
            modules = [importlib.import_module(f"{SUITE}.{name}") for name in THREAD_POOL_MODULES]
        else:
            mixin_home, modules = suite, [suite]
    except unittest.SkipTest as skip:
        raise LookupError(f"{SUITE} skips itself on this interpreter: {skip}") from None
    except ImportError as error:
        raise LookupError(
            f"this interpreter ({sys.executable}) has no {SUITE}: {error} (CPython's "
            "'test' package is left out of some installs, e.g. Debian's libpython3.x-testsuite)"
        ) from None
    mixin = getattr(mixin_home, "ThreadPoolMixin", None)
    if mixin is None or not hasattr(mixin, "executor_type"):
        raise LookupError(f"{mixin_home.__name__} has no ThreadPoolMixin.executor_type")
    return mixin, modules


def _thread_pool_classes(
    mixin: type, modules: list[ModuleType], only: Optional[set[str]]
) -> list[type]:
    classes = []
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, unittest.TestCase)
                and issubclass(value, mixin)
                and value.__module__ == module.__name__
                and (only is None or value.__name__ in only)
            ):
                classes.append(value)
    return classes


def _use_taskrunner(mixin: type) -> None:
    import concurrent.futures

    from taskrunner import Executor

    mixin.executor_type = Executor
    # A few tests build a ThreadPoolExecutor by name rather than by executor_type.
    concurrent.futures.ThreadPoolExecutor = Executor  # type: ignore[misc]


def _build(classes: list[type], left_out: set[str]) -> tuple[unittest.TestSuite, list[str]]:
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    taken_out = []
    for cls in classes:
        for test in loader.loadTestsFromTestCase(cls):
            name = f"{cls.__name__}.{test._testMethodName}"  # type: ignore[attr-defined]
            if name in left_out:
                taken_out.append(name)
            else:
                suite.addTest(test)
    return suite, taken_out


def _summary(
    result: unittest.TestResult,
    test_ids: list[str],
    classes: list[type],
    location: str,
    taken_out: list[str],
) -> dict[str, Any]:
    def named(pairs: list[tuple[Any, str]]) -> list[list[str]]:
        return [[test.id(), detail] for test, detail in pairs]

    return {
        "python": sys.version.split()[0],
        "location": location,
        "classes": sorted(cls.__name__ for cls in classes),
        "ran": result.testsRun,
        "test_ids": test_ids,
        "failures": named(result.failures),
        "errors": named(result.errors),
        "skipped": named(result.skipped),
        "expected_failures": named(result.expectedFailures),
        "unexpected_successes": [test.id() for test in result.unexpectedSuccesses],
        "left_out": taken_out,
    }


def main(argv: list[str]) -> int:
    faulthandler.dump_traceback_later(TIME_LIMIT, exit=True)
    result_file = argv[1]
    left_out = set(json.loads(argv[2])) if len(argv) > 2 else set()
    only = set(json.loads(argv[3])) if len(argv) > 3 else None
    try:
        mixin, modules = _locate()
    except LookupError as missing:
        _write(result_file, {"missing": str(missing)})
        return 0
    from test import support

    support.verbose = False  # as under regrtest without -v: no timings on stdout
    _use_taskrunner(mixin)
    classes = _thread_pool_classes(mixin, modules, only)
    suite, taken_out = _build(classes, left_out)
    test_ids = [test.id() for test in suite]  # a suite lets go of its tests as they run
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    location = getattr(importlib.import_module(SUITE), "__file__", None) or SUITE
    _write(result_file, _summary(result, test_ids, classes, location, taken_out))
    return 0


def _write(path: str, outcome: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(outcome, file)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

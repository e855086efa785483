"""Programs as tasks: start several at once, collect their output, stop a slow one.

Each SubprocessTask starts its program without a shell and is polled until it
exits; its result is the return code and the (bounded) output. The programs
here are short Python one-liners, so the example needs nothing else.
"""

import sys
import time
from typing import Any

import taskrunner
from taskrunner.tasks import SubprocessTask

PYTHON = sys.executable


def python(code: str, **options: Any) -> SubprocessTask:
    return SubprocessTask([PYTHON, "-c", code], **options)


if __name__ == "__main__":
    with taskrunner.TaskRunner() as runner:
        started = time.monotonic()
        version = runner.submit(python("import sys; print(sys.version.split()[0])"))
        failing = runner.submit(python("import sys; sys.exit('no such record: 42')"))
        chatty = runner.submit(python("print('line\\n' * 100_000, end='')", max_output=20))
        sleeper = python("import time; time.sleep(60)", terminate_grace=2.0)
        slow = runner.submit(sleeper, timeout=0.5)
        print(f"submitted 4 programs in {(time.monotonic() - started) * 1000:.1f} ms")

        print(f"python version: {version.result(30)['stdout'].strip()}")
        out = failing.result(30)
        print(f"failing program: returncode {out['returncode']}, stderr {out['stderr'].strip()!r}")
        out = chatty.result(30)
        print(f"chatty program: kept {out['stdout']!r}, truncated={out['truncated']}")
        runner.wait([slow])
        while sleeper.returncode is None:  # SIGTERM at the timeout, SIGKILL 2 s later
            time.sleep(0.01)
        status = slow.status()
        print(
            f"slow program: {status['state']} after {status['runtime']:.1f} s, "
            f"ended by signal {-sleeper.returncode}"
        )

"""``python -m taskrunner``: see ``taskrunner.cli``."""

import sys

from taskrunner.cli import main

try:
    status = main()
except KeyboardInterrupt:
    # Ctrl-C before a command could handle it (while it imports, say): no traceback.
    status = 130
sys.exit(status)

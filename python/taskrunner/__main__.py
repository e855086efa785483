"""``python -m taskrunner``: see ``taskrunner.cli``."""

import sys

from taskrunner.cli import main

sys.exit(main())

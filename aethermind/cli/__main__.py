"""``python -m aethermind.cli``: the same as the ``aethermind`` command."""

import sys

from aethermind.cli import main

sys.exit(main())

"""``python -m tfconf.cli``: the ``tfconf`` script (one copy of the CLI package, whichever way it starts)."""

from tfconf.cli import main

main()

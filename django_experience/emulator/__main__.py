"""``python -m django_experience.emulator``: run the emulator until Ctrl-C."""

import sys

from django_experience.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())

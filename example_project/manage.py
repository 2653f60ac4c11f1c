#!/usr/bin/env python
"""Command-line entry point of the example shop."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # The project's own directory must be importable however the script is started.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

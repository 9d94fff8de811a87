#!/usr/bin/env python3
"""Thin BIDS-App entry point (the container ENTRYPOINT): ``run.py bids_dir out_dir level``."""

import sys

from bida_app.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

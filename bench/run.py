"""``python bench/run.py [options]``: the same as ``python -m bench.pipeline`` from any directory."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline import main

if __name__ == "__main__":
    main()

"""``python -m bench``: run the load benchmark and print its table."""

from __future__ import annotations

from bench.load import main

raise SystemExit(main())

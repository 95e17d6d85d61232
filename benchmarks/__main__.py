"""``python -m benchmarks`` (``make bench``): every benchmark, then RESULTS.md and results.json."""

from benchmarks.report import main

raise SystemExit(main())

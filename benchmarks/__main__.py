"""``python -m benchmarks`` (``make bench``): every benchmark, with its defaults."""

from benchmarks.summarize import main

main([])

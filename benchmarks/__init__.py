"""sparsec benchmarks (not part of the test suite): ``python -m benchmarks.run`` / ``make bench``.

Every comparison is timed in one process with interleaved runs (A B A B ...) and reported as a ratio of
medians, because this machine's speed drifts for tens of seconds at a time (see DESIGN.md, Measuring).
"""

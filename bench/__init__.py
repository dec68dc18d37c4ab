"""Benchmarks: real servers, real clients, JSON summaries and PNG charts in bench/results/.

`python -m bench.all` runs the set; each of bench.fanout, bench.pollpush,
bench.ingest and bench.rest also runs on its own (see its --help). bench.floor
is the minimal fan-out server the project is compared with.
"""

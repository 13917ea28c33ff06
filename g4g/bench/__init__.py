"""Benchmarks, printed and never asserted (the machines are noisy): `make bench` runs them all.

    python -m g4g.bench.prep [--long]   data preparation on a generated 1080p clip (and peak memory)
    python -m g4g.bench.train           training throughput, loader/compute split (CUDA: paper scale)
    python -m g4g.bench.infer           end-to-end lip-sync frames/s per stage, and each metric
"""

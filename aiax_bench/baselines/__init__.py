"""Reference methods, each written from its paper and registered under ``aiax_bench.methods``.

This folder ships inside the package as ``aiax_bench.baselines``.
"""

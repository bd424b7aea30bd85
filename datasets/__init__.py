"""Dataset registry (``registry.yaml``) and recipes (``<family>/v<version>.yaml``).

This folder is data: it ships inside the package as ``aiax_bench.catalog``.
"""

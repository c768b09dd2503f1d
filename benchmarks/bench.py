"""Federation vs. native ZODB benchmark: ``python benchmarks/bench.py [--quick] [--full] ...``.

The same as ``zfed bench``; the workloads live in :mod:`federation.benchmark`
(installed with the package).  See docs/performance.md for measured figures.
"""

from federation.cli import bench_command

if __name__ == "__main__":
    bench_command(prog_name="bench.py")

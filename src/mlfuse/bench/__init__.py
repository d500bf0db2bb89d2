"""``mlfuse bench``: methods x datasets -> paper-style metric tables, an efficiency table and
comparison figures, with fused results cached on disk. See :func:`run_bench`."""

from mlfuse.bench.config import BenchConfig, DatasetSpec, FigureSpec, MethodSpec, load_config
from mlfuse.bench.runner import BenchResult, run_bench

__all__ = ["BenchConfig", "BenchResult", "DatasetSpec", "FigureSpec", "MethodSpec", "load_config", "run_bench"]

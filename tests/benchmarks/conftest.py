"""The benchmark scripts live in benchmarks/, outside the package; tests are imported with
--import-mode=importlib, which does not put that folder on sys.path, so it is added here
for `import perf_train` (and the scripts' own `import _common`)."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

"""The training tests share `tiny_training.py` (a tiny model, dataset and a runnable
training script). Tests are imported with --import-mode=importlib, which does not put
their folder on sys.path, so it is added here for `import tiny_training`."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

"""funlora-bench: the continual protocol, grids, sweeps and reports.

Importing the package fixes this process's numerics mode before torch loads
(``bench/numerics.py``: portable by default, ``FUNLORA_NUMERICS=native`` for the libraries'
own choice), so every command and every job a sweep starts computes in one known mode.
"""
from . import numerics as _numerics

_numerics.pin_process()

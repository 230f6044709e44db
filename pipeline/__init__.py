"""aeinspect: learn what good parts look like, flag what is off it.

The library computes; it has no orchestration and no I/O side effects at import.
"""

__version__ = "0.1.0"

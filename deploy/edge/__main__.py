"""`python -m deploy.edge <command>`: the same CLI as the `aeinspect-edge` console script."""

import sys

from deploy.edge.cli import main

sys.exit(main())

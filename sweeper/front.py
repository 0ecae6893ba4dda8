"""`python -m sweeper.front`: the search's command-line table (its code lives in
sweeper.search.cli; this module keeps the documented command name)."""

import sys

from sweeper.search.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m n1v1 ...` runs the `n1v1` command (the same `main` as the console script)."""

import sys

from n1v1.cli import main

if __name__ == "__main__":
    sys.exit(main())

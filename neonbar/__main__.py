"""`python -m neonbar` is the `neonbar` command."""

import sys

from neonbar.cli import main

sys.exit(main())

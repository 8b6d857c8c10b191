"""`python -m kithara_hls` runs the `kithara-hls` command."""

import sys

from .cli import main

sys.exit(main())

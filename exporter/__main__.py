"""``python -m exporter`` runs the daemon."""

import sys

from exporter.daemon import main

sys.exit(main())

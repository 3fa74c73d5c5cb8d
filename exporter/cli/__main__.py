"""``python -m exporter.cli`` runs ``portqry``."""

import sys

from exporter.cli.entry import main

sys.exit(main())

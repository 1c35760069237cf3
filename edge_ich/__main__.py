import sys

from edge_ich.cli import main

sys.exit(main())

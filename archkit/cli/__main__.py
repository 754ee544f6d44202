import sys

from archkit.cli import main

sys.exit(main())

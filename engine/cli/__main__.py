"""`python -m urbanrun.engine.cli` is the `urbanrun` command."""
import sys

from urbanrun.engine.cli.main import main

sys.exit(main())

import sys
from convgen.cli import main

sys.exit(main())

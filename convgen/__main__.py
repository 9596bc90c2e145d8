import sys

from convgen.entry import main

sys.exit(main())

"""python -m tests.cluster: run the local Kubernetes test cluster until Ctrl-C."""

import sys

from tests.cluster.launcher import main

sys.exit(main())

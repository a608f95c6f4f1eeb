"""`python -m tests.mlflowstack`: start the local MLflow stack, print how to reach it, wait.

Stops everything on Ctrl-C or SIGTERM. `--basic-auth` adds a second server with basic auth;
`--info-file` writes the connection details as JSON for scripts (the demo).
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
from pathlib import Path

from tests.mlflowstack import stack as stack_module
from tests.support.processes import PidRecord


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.mlflowstack", description=__doc__)
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a new temp dir)")
    parser.add_argument("--basic-auth", action="store_true", help="also start a basic-auth server")
    parser.add_argument("--info-file", type=Path, help="write connection details here as JSON")
    args = parser.parse_args()

    stopped = PidRecord.default().reap_stale()
    if stopped:
        print(f"stopped leftovers of an earlier session: {stopped}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlflow-stack-"))
    stack = stack_module.start(workdir)
    try:
        info = stack.connection_info()
        if args.basic_auth:
            auth_server = stack.start_basic_auth_server()
            assert auth_server.auth is not None
            info |= {
                "AUTH_MLFLOW_TRACKING_URI": auth_server.tracking_uri,
                "MLFLOW_TRACKING_USERNAME": auth_server.auth.username,
                "MLFLOW_TRACKING_PASSWORD": auth_server.auth.password,
            }
        print(f"MLflow stack up in {stack.started_in_s:.1f}s (logs in {workdir}/logs)")
        for key, value in info.items():
            print(f"export {key}='{value}'")
        if args.info_file:
            args.info_file.write_text(json.dumps(info, indent=2) + "\n")
        print("Ctrl-C to stop", flush=True)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        done.wait()
    finally:
        stack.stop()
        print("MLflow stack stopped")


if __name__ == "__main__":
    main()

"""What the project's serving images have installed, as a JSON file the operator reads.

The pre-flight check (core/modeldeployment/preflight.py) compares a version's requirements with
the serving image's packages without starting the image: the operator cannot read an image's
files or labels (it has no registry access, and pulling an image to look inside would cost more
than the rollout it guards). The serving images install exactly their lock files
(deploy/image/locks/serving-*.txt, `pip install --require-hashes --no-deps`), on the same
Python base image as the operator's, so the operator image's build writes this file from those
locks with its own Python version (Dockerfile: `mlflow-operator image-contents`). Whoever sets
the default serving images to images of their own writes one for those, or sets the path empty.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_operator.core.modeldeployment.preflight import ImageContents, contents_from_lock

logger = logging.getLogger(__name__)

SERVING_IMAGE_CPU = "serving-cpu"  # the project's image names (config._PROJECT_IMAGE_FIELDS)
SERVING_IMAGE_GPU = "serving-gpu"


def contents_of_locks(locks: Mapping[str, Path], python: str | None = None) -> dict[str, Any]:
    """The file's JSON for lock files by image name, for that Python (default: this one's)."""
    version = python or platform.python_version()
    return {
        "python": version,
        "images": {
            name: contents_from_lock(path.read_text(), version).to_json()
            for name, path in sorted(locks.items())
        },
    }


def read_image_contents(path: str) -> dict[str, ImageContents]:
    """Image name -> what it has installed; empty (the check says Unknown) when the path is
    empty, or the file is missing or malformed (logged: the operator works without it)."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
        return {
            str(name): ImageContents.from_json(contents)
            for name, contents in dict(data["images"]).items()
        }
    except FileNotFoundError:
        logger.warning("serving_image_contents: %s does not exist; requirements unchecked", path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning(
            "serving_image_contents: %s is not readable or not the operator's format (%s); "
            "requirements unchecked",
            path,
            exc,
        )
    return {}

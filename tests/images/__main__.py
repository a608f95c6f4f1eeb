"""python -m tests.images [NAME ...]: build the images (cached), print name, image and archive."""

from __future__ import annotations

import sys

from tests.images.build import IMAGE_NAMES, ensure_images
from tests.images.buildah import ImageBuildError


def main(argv: list[str]) -> int:
    try:
        built = ensure_images(argv or IMAGE_NAMES)
    except ImageBuildError as error:
        print(error, file=sys.stderr)
        return 1
    for name, image in built.items():
        print(f"{name}\t{image.name}\t{image.archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

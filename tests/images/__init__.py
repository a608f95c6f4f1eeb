"""The project's container images built locally with buildah, for a real test node's containerd.

``tests.images.build`` has the API (ensure_images, image_names); ``python -m tests.images``
builds them (cached) and prints where they are.
"""

"""The demo of the main job: `make demo` (python -m demo)."""

"""Run one benchmark by name: ``python -m bench NAME [args]`` (``python -m bench`` lists them)."""

import importlib
import pkgutil
import sys

import bench


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m bench NAME [args]\n\nbenchmarks:")
        for name in available():
            doc = (importlib.import_module(f"bench.{name}").__doc__ or "").strip().splitlines()
            print(f"  {name:<20} {doc[0] if doc else ''}")
        return 0
    module = importlib.import_module(f"bench.{argv[0]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

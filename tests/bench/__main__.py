"""`make bench`: runs every benchmark module in this package and prints its figures."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import django


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdphub.settings")
    django.setup()
    from tests import bench

    names = [m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")]
    only = sys.argv[1:]
    for name in sorted(names):
        if only and name not in only:
            continue
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"== {name}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}")
        module.run()
    if not names:
        print("no benchmarks yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())

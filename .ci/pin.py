"""Write constraints.txt: the installed version of every package that `pip install -e ".[test]"` pulls in.

    python .ci/pin.py > constraints.txt

Run it after upgrading on purpose (`pip install -U -e ".[test]"`, then the tests) so that CI and the quick start keep
installing versions that were tested together. torch is left out: install.sh pins its CPU wheel itself.
"""
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.markers import default_environment
from packaging.requirements import Requirement

LEFT_OUT = {"torch", "lstm-asr"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: set[str]) -> dict[str, str]:
    pinned, todo = {}, [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        key = canonical(dist.metadata["Name"])
        if key in pinned and not wanted:
            continue
        pinned[key] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({**default_environment(), "extra": e})
                                      for e in (wanted or {""})):
                continue
            if canonical(req.name) not in pinned:
                todo.append((req.name, set(req.extras)))
    return pinned


def main() -> int:
    pinned = closure("lstm-asr", {"test"})
    print("# Versions CI and install.sh install (python .ci/pin.py > constraints.txt after a tested upgrade).")
    for name, version in sorted(pinned.items()):
        if name not in LEFT_OUT:
            print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Each mutated module's score from the last `mutmut run` (make mutate): killed and timed out
over tested, and whether it reaches the goal. Survivors are listed for `mutmut show NAME`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

GOAL = 95.0
MUTMUT = str(Path(sys.executable).with_name("mutmut"))


def main() -> int:
    listed = subprocess.run(
        [MUTMUT, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for line in listed.splitlines():
        found = re.match(r"\s*(\S+?)\.x[_ǁ]\S*: (.+)$", line)
        if found is None:
            continue
        module, status = found.groups()
        counts[module][status.strip()] += 1
        if status.strip() == "survived":
            survivors.append(line.strip().split(":")[0])
    if not counts:
        print("no mutants: run `make mutate`", file=sys.stderr)
        return 1
    print(f"| module | tested | killed | timeout | survived | score | goal {GOAL:g}% |")
    print("|---|---|---|---|---|---|---|")
    worst = 100.0
    for module, seen in sorted(counts.items()):
        tested = sum(seen.values()) - seen["skipped"] - seen["not checked"]
        score = 100.0 * (seen["killed"] + seen["timeout"]) / tested if tested else 0.0
        worst = min(worst, score)
        met = "met" if score >= GOAL else "**missed**"
        print(
            f"| {module} | {tested} | {seen['killed']} | {seen['timeout']} | "
            f"{seen['survived']} | {score:.1f}% | {met} |"
        )
    for name in survivors:
        print(f"survived: {name}")
    return 0 if worst >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())

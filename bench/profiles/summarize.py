"""Top frames of one thread of a py-spy speedscope profile, by self and by inclusive share.

    python bench/profiles/summarize.py FILE [THREAD-NAME-PART] [N]
"""

from __future__ import annotations

import collections
import json
import sys


def frame_name(frame: dict[str, object]) -> str:
    file = str(frame.get("file", "")).rsplit("/", 1)[-1]
    return f"{frame['name']} ({file}:{frame.get('line', '')})"


def main() -> None:
    path = sys.argv[1]
    want = sys.argv[2] if len(sys.argv) > 2 else "kstream-bench-app"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    with open(path) as f:
        data = json.load(f)
    frames = data["shared"]["frames"]
    for prof in data["profiles"]:
        if want not in prof["name"]:
            continue
        total = sum(prof["weights"])
        own: collections.Counter[int] = collections.Counter()
        inclusive: collections.Counter[int] = collections.Counter()
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            own[stack[-1]] += weight
            for index in set(stack):
                inclusive[index] += weight
        print(f"{prof['name']}: {total:.1f} s sampled")
        for title, counts in (("self", own), ("inclusive", inclusive)):
            print(f"--- {title}")
            for index, weight in counts.most_common(top):
                print(f"{weight / total * 100:5.1f}% {frame_name(frames[index])}")


if __name__ == "__main__":
    main()

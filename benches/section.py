"""Puts a section into benches/RESULTS.md: the text on stdin, which starts
with its `<!-- NAME.sh -->` marker, replaces that section (up to the next
marker or the end), or goes before the ops.sh section, or at the end.

    python3 benches/section.py stages.sh < section.md
"""
import os
import re
import sys

name = sys.argv[1]
marker = f"<!-- {name} -->"
path = "benches/RESULTS.md"
text = open(path).read() if os.path.exists(path) else ""
section = sys.stdin.read().rstrip() + "\n"
if marker in text:
    pattern = re.escape(marker) + r".*?(?=^<!-- [a-z-]+\.sh -->|\Z)"
    text = re.sub(pattern, lambda m: section + "\n", text, flags=re.S | re.M)
elif "<!-- ops.sh -->" in text and name != "ops.sh":
    text = text.replace("<!-- ops.sh -->", section + "\n<!-- ops.sh -->", 1)
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text)

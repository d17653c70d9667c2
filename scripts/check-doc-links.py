#!/usr/bin/env python3
"""Checks relative links in README.md, docs/*.md and examples/*/README.md: the file exists, and an
#anchor names a heading of the target (GitHub's slug rules). Prints each broken link; exit 1 if any."""
import re, sys, pathlib
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)')
def slug(h):
    h = re.sub(r'`', '', h.strip().lower())
    h = re.sub(r'[^\w\- ]', '', h)
    return h.replace(' ', '-')
def anchors(p):
    out, seen, fence = set(), {}, False
    for line in p.read_text().splitlines():
        if line.startswith('```'):
            fence = not fence
        if fence: continue
        m = re.match(r'#{1,6}\s+(.*)', line)
        if m:
            s = slug(m.group(1)); n = seen.get(s, 0); seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out
files = [root / "README.md"] + sorted((root / "docs").glob("*.md")) + sorted(root.glob("examples/*/README.md"))
bad = 0
for f in files:
    text, fence = [], False
    for line in f.read_text().splitlines():
        if line.startswith('```'): fence = not fence; continue
        if not fence: text.append(re.sub(r'`[^`]*`', '', line))
    for target in LINK.findall("\n".join(text)):
        if re.match(r'[a-z]+:', target): continue
        path, _, frag = target.partition('#')
        dest = (f.parent / path).resolve() if path else f
        if not dest.exists():
            print(f"{f.relative_to(root)}: {target}: no such file"); bad += 1; continue
        if frag and dest.suffix == '.md' and frag not in anchors(dest):
            print(f"{f.relative_to(root)}: {target}: no heading #{frag}"); bad += 1
print(f"check-doc-links: {len(files)} files, {bad} broken")
sys.exit(1 if bad else 0)

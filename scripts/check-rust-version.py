#!/usr/bin/env python3
"""The workspace's rust-version must be at least every locked dependency's.

Only one toolchain can be installed here, so the minimum cannot be proven by
building with it; this catches the common way it goes stale: a dependency
update raising its own minimum. Reads `cargo metadata --locked` on stdin.
"""
import json
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.load(sys.stdin)
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
ours = {p["id"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
declared = {version(p["rust_version"]) for p in meta["packages"] if p["id"] in ours and p.get("rust_version")}
if len(declared) != 1:
    sys.exit(f"workspace members declare {len(declared)} different rust-versions; use rust-version.workspace")
declared = declared.pop()
needed = max(
    ((version(p["rust_version"]), f'{p["name"]} {p["version"]}') for p in meta["packages"]
     if p["id"] in resolved and p["id"] not in ours and p.get("rust_version")),
    default=((0, 0, 0), "nothing"),
)
if needed[0] > declared:
    sys.exit(f"rust-version {'.'.join(map(str, declared))} is below {needed[1]}'s {'.'.join(map(str, needed[0]))}")
print(f"rust-version {'.'.join(map(str, declared))} covers every dependency (highest: {needed[1]}, {'.'.join(map(str, needed[0]))})")

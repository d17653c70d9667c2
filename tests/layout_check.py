#!/usr/bin/env python3
"""layout_check: the include rules of the source tree (docs/architecture.md), checked on every build.

- lib/ is layered, lowest first: base, json, schema, async, pool, http, clients, app. A file under lib/X/ may
  include headers of X and of lower folders only, so no circle can cross folders.
- include/apiary/ holds exactly the public headers. Each belongs to the subsystem that implements it
  (PUBLIC_LAYER below) and counts as that folder's header for the rule above. A public header includes
  only other public headers and system headers, never a private one (an installed app has no lib/).
- apiary.h includes every public header, so an app that includes it has the whole API.
- Header file names are unique across include/apiary/ and lib/, because every folder is on the
  private include path and a file names a header by its file name alone; every header under lib/ is
  private and says so in its name (NAME_internal.h).

Usage: layout_check.py SOURCE_DIR. Prints every violation and exits 1 if there is one."""
import os
import re
import sys

LAYERS = ["base", "json", "schema", "async", "pool", "http", "clients", "app"]

# The subsystem each public header belongs to. A new public header must be named here.
PUBLIC_LAYER = {
    "arena.h": "base", "log.h": "base", "metrics.h": "base", "uri.h": "base",
    "json_writer.h": "json",
    "schema.h": "schema",
    "async.h": "async",
    "pool.h": "pool",
    "http_method.h": "http", "router.h": "http", "http_request.h": "http", "middleware.h": "http", "background.h": "http",
    "stream.h": "http",
    "websocket.h": "http",
    "static.h": "http",
    "http_client.h": "clients", "redis.h": "clients", "sql.h": "clients", "pubsub.h": "clients",
    "apiary.h": "app", "testing.h": "app",
}

# Quoted includes of third-party headers that are not part of the tree.
EXTERNAL = {"llhttp.h"}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def quoted_includes(path):
    with open(path, encoding="utf-8") as f:
        return INCLUDE_RE.findall(f.read())


def main(src):
    errors = []
    public_dir = os.path.join(src, "include", "apiary")
    public = sorted(n for n in os.listdir(public_dir) if n.endswith(".h"))

    # Which folder owns each header name; a name may stand in one place only.
    owner = {}
    for name in public:
        if name not in PUBLIC_LAYER:
            errors.append(f"include/apiary/{name}: name its subsystem in PUBLIC_LAYER (tests/layout_check.py)")
            continue
        owner[name] = PUBLIC_LAYER[name]
    for name in set(PUBLIC_LAYER) - set(public):
        errors.append(f"tests/layout_check.py names include/apiary/{name}, which does not exist")
    lib = os.path.join(src, "lib")
    for entry in sorted(os.listdir(lib)):
        if os.path.isdir(os.path.join(lib, entry)) and entry not in LAYERS:
            errors.append(f"lib/{entry}/: not a known subsystem; add it to LAYERS (and to CMakeLists.txt)")
        elif os.path.isfile(os.path.join(lib, entry)):
            errors.append(f"lib/{entry}: every library file lives in a subsystem folder")
    for layer in LAYERS:
        folder = os.path.join(lib, layer)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if not name.endswith(".h"):
                continue
            if not name.endswith("_internal.h"):
                errors.append(f"lib/{layer}/{name}: a private header's name ends in _internal.h")
            if name in owner:
                where = "include/apiary" if name in public else f"lib/{owner[name]}"
                errors.append(f"lib/{layer}/{name}: a header of that name is in {where} already")
            owner[name] = layer

    # Public headers: only public and system headers; apiary.h includes them all.
    for name in public:
        for inc in quoted_includes(os.path.join(public_dir, name)):
            if inc not in public:
                errors.append(f"include/apiary/{name} includes \"{inc}\", which is not a public header")
    umbrella = set(quoted_includes(os.path.join(public_dir, "apiary.h")))
    for name in public:
        if name != "apiary.h" and name not in umbrella:
            errors.append(f"include/apiary/apiary.h does not include {name}")

    # lib/X/ includes X and lower folders only.
    for layer in LAYERS:
        folder = os.path.join(lib, layer)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            for inc in quoted_includes(os.path.join(folder, name)):
                if inc in EXTERNAL:
                    continue
                if inc not in owner:
                    errors.append(f"lib/{layer}/{name} includes \"{inc}\", found neither in include/apiary nor in lib/")
                elif LAYERS.index(owner[inc]) > LAYERS.index(layer):
                    errors.append(f"lib/{layer}/{name} includes \"{inc}\" of lib/{owner[inc]}, a higher subsystem")

    for e in errors:
        print("layout:", e)
    print(f"layout: {len(errors)} violation(s)" if errors else "layout: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")))

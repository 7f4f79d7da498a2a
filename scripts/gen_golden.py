#!/usr/bin/env python3
"""Write the expected outputs of fixtures/golden/* with an independent oracle.

For each input NAME.{csv,jsonl,json} in fixtures/golden, this reads the
records with Python's own csv and json modules (not with mmp), scores them
with the model in fixtures/model/model.json (bias + w.x), and writes
NAME.EXT.expected.{csv,jsonl,json} in the formats the README documents. The
Rust tests then require mmp score and mmp serve to produce these bytes
exactly. Run it after adding a golden input: python3 scripts/gen_golden.py
"""
import csv
import io
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
GOLDEN = os.path.join(ROOT, "golden")


def rows_csv(text):
    for row in csv.reader(io.StringIO(text, newline="")):
        if row:
            yield [float(f) for f in row]


def rows_jsonl(text):
    for line in text.splitlines():
        if line.strip():
            yield row_of(json.loads(line))


def row_of(v):
    return v["features"] if isinstance(v, dict) else v


def rows_json(text):
    doc = json.loads(text)
    if isinstance(doc, dict) and "instances" in doc:
        return [row_of(r) for r in doc["instances"]]
    if isinstance(doc, list) and doc and not isinstance(doc[0], (list, dict)):
        return [doc]
    if isinstance(doc, dict):
        return [row_of(doc)]
    return [row_of(r) for r in doc]


def num(x):
    # repr gives the shortest text that reads back as the same double, as
    # ryu does, for the moderate values used here.
    return repr(float(x))


def main():
    with open(os.path.join(ROOT, "model", "model.json")) as f:
        model = json.load(f)
    b, w = model["bias"], model["weights"]
    readers = {".csv": rows_csv, ".jsonl": rows_jsonl, ".json": rows_json}
    for name in sorted(os.listdir(GOLDEN)):
        base, ext = os.path.splitext(name)
        if ".expected" in name or ext not in readers:
            continue
        with open(os.path.join(GOLDEN, name), encoding="utf-8-sig", newline="") as f:
            text = f.read()
        preds = []
        for row in readers[ext](text):
            assert len(row) == len(w), (name, row)
            preds.append(b + sum(wi * xi for wi, xi in zip(w, row)))
        out = {
            "csv": "".join(num(p) + "\n" for p in preds),
            "jsonl": "".join('{"score":%s}\n' % num(p) for p in preds),
            "json": '{"predictions":[%s]}\n' % ",".join('{"score":%s}' % num(p) for p in preds),
        }
        for oext, body in out.items():
            with open(os.path.join(GOLDEN, "%s.expected.%s" % (name, oext)), "w", newline="") as f:
                f.write(body)
        print("%-22s %d records" % (name, len(preds)))


if __name__ == "__main__":
    main()

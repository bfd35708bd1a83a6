#!/usr/bin/env python3
"""Independent verifier for a ztp audit export (JSON lines, format v1).

Usage: verify_audit.py EXPORT.jsonl
Prints "ok <records> <head hash>" or "bad <seq>: <reason>" (exit status 1).
Follows the recipe in the Go package documentation of ztp/audit; it uses
only the Python standard library and never re-serializes JSON.
"""
import hashlib, json, struct, sys

MARK = b'"hash":"'
prev, seq = "0" * 64, 0
for raw in open(sys.argv[1], "rb"):
    line = raw.rstrip(b"\n")
    seq += 1
    rec = json.loads(line)
    i = line.index(MARK)                       # step 1: first "hash":" is top level
    h = line[i + len(MARK):i + len(MARK) + 64].decode()
    end = i + len(MARK) + 65                   # past the closing quote
    if line[i - 1:i] == b",":                  # step 2: drop member and one comma
        c = line[:i - 1] + line[end:]
    else:
        c = line[:i] + line[end + 1:]
    frame = b"ztp-audit-v1\x00" + bytes.fromhex(rec["prev_hash"]) + struct.pack(">Q", len(c)) + c
    if hashlib.sha256(frame).hexdigest() != h or rec["hash"] != h:   # step 3
        sys.exit("bad %d: hash mismatch" % seq)
    if rec["seq"] != seq or rec["prev_hash"] != prev:                # step 4
        sys.exit("bad %d: chain broken (seq %d)" % (seq, rec["seq"]))
    prev = h
print("ok", seq, prev)

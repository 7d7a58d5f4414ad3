#!/usr/bin/env python3
"""Turns the output of `make soak` into bench/SOAK.md: the storm's and the fuzzers' summary
lines, as printed by the tests (tests/guardrails.rs, selfheal_core::testing::fuzz).
  soak_report.py LOG > bench/SOAK.md"""

import datetime
import re
import sys

lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
storms = [l.strip() for l in lines if l.startswith("storm with")]
fuzz = [l.strip() for l in lines if l.startswith("fuzz ")]
results = [l.strip() for l in lines if l.startswith("test result:")]
print("# selfheal soak results\n")
print(f"Generated from the output of `make soak` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}.\n")
print("## Alarm storm (tests/guardrails.rs, emulator DynamoDB ledger)\n")
print("Outcome of every event, by audit code (`acted` = the action ran):\n")
for s in storms:
    print(f"- {s}")
print("\n## Structure-aware fuzzing (selfheal_core::testing::fuzz)\n")
print("| parser | cases | accepted | rejected | panics |")
print("|---|---:|---:|---:|---:|")
for f in fuzz:
    m = re.match(r"fuzz (.+): (\d+) cases, (\d+) accepted, (\d+) rejected, (\d+) panics", f)
    if m:
        print(f"| {m[1]} | {int(m[2]):,} | {int(m[3]):,} | {int(m[4]):,} | {m[5]} |")
print("\nEvery rejection was a one-line reason (the tests fail otherwise).\n")
print("## cargo's summary lines\n")
for r in results:
    print(f"- {r}")

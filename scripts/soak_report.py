#!/usr/bin/env python3
"""Turns the output of `make soak` into bench/SOAK.md: the storm's, the fuzzers' and the no-loss
test's summary lines, as printed by the tests (tests/guardrails.rs, selfheal_core::testing::fuzz,
tests/replay_transactions.rs).
  soak_report.py LOG > bench/SOAK.md"""

import datetime
import re
import sys

lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
storms = [l.strip() for l in lines if l.startswith("storm with")]
fuzz = [l.strip() for l in lines if l.startswith("fuzz ")]
results = [l.strip() for l in lines if l.startswith("test result:")]
noloss = [l.strip() for l in lines if l.startswith("NOLOSS ")]
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
if noloss:
    print("## replay-transactions: no transaction lost, each copied at most once per ambiguous event\n")
    print("Per seed (`SELFHEAL_NOLOSS_SEEDS`), from the test's `NOLOSS` lines; the test fails if a transaction is lost or has more")
    print("copies (and parks) than 1 + the ambiguous events that touched it.\n")
    print("| DLQ | seed | transactions | replayed | parked | already applied | touched by ambiguity | most copies of one | extra copies |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for l in noloss:
        f = dict(kv.split("=", 1) for kv in l.split()[2:] if "=" in kv and not kv.startswith(("crashes", "faults")))
        seed = l.split()[2].split("=", 1)[1]
        print(f"| {l.split()[1]} | {seed} | {f.get('transactions')} | {f.get('replayed')} | {f.get('parked')} | {f.get('applied')} | "
              f"{f.get('touched_by_ambiguity')} | {f.get('copies_max')} | {f.get('duplicates_total')} |")
    print()
print("## cargo's summary lines\n")
for r in results:
    print(f"- {r}")

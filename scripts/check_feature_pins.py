#!/usr/bin/env python3
"""Checks that building one function alone resolves the same cargo features, on everything the
AWS SDK crates are built from, as the whole-workspace test build does.

Why: cargo compiles a crate once per feature set. If `cargo lambda watch` (the demo, one
function at a time) resolved other features on, say, aws-smithy-types than `cargo test
--workspace` does, every SDK crate above it would be compiled twice. The pins that keep the sets
equal live in shared/aws/Cargo.toml ("feature pins"); this check tells when one is missing.
Runs `cargo tree` only (no compilation), so it is cheap enough for `make lint`. (`cargo build
-Z unstable-options --unit-graph` shows the same per unit, but needs a nightly cargo.)
"""

import subprocess
import sys

FUNCTIONS = ["reboot-instance", "restore-object", "replay-transactions", "scale-group"]
SDK = ["ec2", "s3", "sqs", "dynamodb", "autoscaling", "cloudwatch", "ssm", "sns", "scheduler"]


def tree(*args):
    out = subprocess.run(
        ["cargo", "tree", "--locked", "--prefix", "none", *args],
        check=True, text=True, capture_output=True,
    ).stdout
    return [l.replace(" (*)", "").replace(" (proc-macro)", "").strip() for l in out.splitlines() if l.strip()]


def features(*args):
    found = {}
    for line in tree("-f", "{p}|{f}", *args):
        pkg, _, feats = line.partition("|")
        found[pkg] = feats
    return found


def main():
    # Eval runs in a build of its own (see the Makefile), so it is not part of the reference.
    workspace = features("--workspace", "--exclude", "selfheal-eval", "-e", "normal,build,dev")
    closure = set()
    for s in SDK:
        closure.update(tree("-p", f"aws-sdk-{s}", "-e", "normal,build", "-f", "{p}"))
    bad = []
    # Each function alone (`cargo build -p`), and a build without -p over the default members
    # (`cargo run --bin <function>`, as the demo's `cargo lambda watch` does).
    builds = [(f, ("-p", f)) for f in FUNCTIONS] + [("default members", ())]
    for f, selection in builds:
        alone = features(*selection, "-e", "normal,build")
        for pkg, feats in sorted(alone.items()):
            if pkg in closure and workspace.get(pkg) != feats:
                bad.append(f"{f}: {pkg} gets [{feats}] alone, [{workspace.get(pkg)}] in the workspace build")
    if bad:
        print("feature sets differ; pin the workspace's features in shared/aws/Cargo.toml:", file=sys.stderr)
        print("\n".join("  " + b for b in bad), file=sys.stderr)
        return 1
    print(f"feature pins: ok ({len(closure)} crates under the AWS SDK, same features alone and in the workspace build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

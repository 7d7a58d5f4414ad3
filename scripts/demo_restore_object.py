"""restore-object in the demo: a data bucket with a replica; one object is corrupted (its bytes
change, the producer's recorded SHA-256 stays), restored from the replica, and verified; a
second corrupted object with no good copy anywhere is quarantined; then a scrub."""

import hashlib

TITLE = "restore-object: S3 object no longer matches its digest → restore from a verified copy"

state = {}


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def setup(demo):
    s3 = demo.client("s3")
    data, replica = "selfheal-demo-data", "selfheal-demo-replica"
    for b in (data, replica):
        s3.create_bucket(Bucket=b)
    s3.put_bucket_tagging(Bucket=data, Tagging={"TagSet": [{"Key": "selfheal:managed", "Value": "true"}]})
    good = bytes((i * 7919) % 251 for i in range(256 * 1024))
    key = "exports/2026-11-23/orders part 1.parquet"
    meta = {"sha256": sha256(good), "producer": "nightly-export"}
    s3.put_object(Bucket=replica, Key=key, Body=good, Metadata=meta)
    s3.put_object(Bucket=data, Key=key, Body=good, Metadata=meta, ContentType="application/vnd.apache.parquet")
    lonely = "exports/2026-11-23/no-replica.csv"
    lonely_good = b"id,total\n1,10\n2,20\n"
    s3.put_object(Bucket=data, Key=lonely, Body=lonely_good, Metadata={"sha256": sha256(lonely_good)})
    for i in range(20):
        body = f"row {i}\n".encode()
        s3.put_object(Bucket=data, Key=f"logs/{i:03}.txt", Body=body, Metadata={"sha256": sha256(body)})
    state.update(data=data, replica=replica, key=key, good=good, lonely=lonely)
    return {"SELFHEAL_RESTORE_REPLICA_BUCKETS": f"{data}={replica}"}


def corrupt(demo, bucket, key, body, **kw):
    """Bytes gone bad at rest, made with the only tool the API has (a write): without a checksum
    of the bad bytes and encrypted with KMS, so that nothing of S3's vouches for them (a plain
    PUT would give them a matching MD5 ETag, which restore-object rightly reads as new content)."""
    import boto3
    from botocore.config import Config

    corruptor = boto3.client(
        "s3",
        endpoint_url=demo.endpoint,
        region_name=demo.region,
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"),
    )
    corruptor.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="aws:kms", **kw)


def current(demo, key):
    return demo.client("s3").get_object(Bucket=state["data"], Key=key)["Body"].read()


def object_event(bucket, key):
    return {"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key}}}


def run(demo):
    s3 = demo.client("s3")
    data, key, good = state["data"], state["key"], state["good"]
    demo.say(f"s3://{data}/{key} records sha256={sha256(good)[:16]}… in its metadata; a replica exists")

    # Corruption: the bytes change, the producer's recorded digest stays.
    bad = bytearray(good)
    bad[4096] ^= 0xFF
    head = s3.head_object(Bucket=data, Key=key)
    corrupt(demo, data, key, bytes(bad), Metadata=head["Metadata"], ContentType=head["ContentType"])
    before = sha256(current(demo, key))
    r = demo.invoke("restore-object", object_event(data, key))
    demo.show_audits("EventBridge Object Created (corrupted bytes)", r)
    after = sha256(current(demo, key))
    demo.before_after("sha256 of the object", before[:16] + "…", after[:16] + "…")
    demo.expect("corrupted object restored", isinstance(r, list) and r and r[0]["decision"] == "acted")
    demo.expect("restored bytes equal the original", after == sha256(good))

    r = demo.invoke("restore-object", object_event(data, key))
    demo.show_audits("the restore's own event", r, "no-op: the restored object verifies (loop guard)")
    demo.expect("second event is a no-op", isinstance(r, list) and r and r[0]["code"] == "nothing-to-do")

    lonely = state["lonely"]
    corrupt(demo, data, lonely, b"id,total\n1,10\n2,2O\n",
            Metadata=s3.head_object(Bucket=data, Key=lonely)["Metadata"])
    r = demo.invoke("restore-object", object_event(data, lonely))
    quarantined = s3.list_objects_v2(Bucket=data, Prefix="selfheal-quarantine/").get("KeyCount", 0)
    demo.show_audits("corrupted object with no good copy", r, f"quarantine copies: {quarantined}; original left in place; notified")
    demo.expect("unrecoverable object quarantined", isinstance(r, list) and r and r[0]["code"] == "unrecoverable")

    r = demo.invoke("restore-object", {"bucket": data, "prefix": "logs/"})
    s = r.get("summary", {}) if isinstance(r, dict) else {}
    demo.show("scrub s3://%s/logs/" % data, "skipped" if s else "failed",
              f"examined {s.get('examined')}, verified ok {s.get('verified_ok')}, restored {s.get('restored')}, "
              f"unverifiable {s.get('unverifiable')}, unrecoverable {s.get('unrecoverable')}; complete={r.get('complete') if isinstance(r, dict) else '?'}")
    demo.expect("scrub verified every log object", s.get("verified_ok") == 20)

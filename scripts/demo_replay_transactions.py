"""Demo: replay-transactions drains a loyalty dead-letter queue holding good, poison,
already-applied and exhausted transactions: good ones are replayed, poison and exhausted ones
parked, applied ones skipped — and a second delivery of the same batch changes nothing."""

import base64
import json
import time

TITLE = "replay-transactions: a loyalty DLQ drained — replayed, parked or skipped, none lost, none twice"

_state = {}


def setup(demo):
    suffix = str(int(time.time()))
    sqs, s3, ddb = demo.client("sqs"), demo.client("s3"), demo.client("dynamodb")
    processing = sqs.create_queue(
        QueueName="loyalty-processing-" + suffix, tags={"selfheal:managed": "true"}
    )["QueueUrl"]
    dlq = sqs.create_queue(QueueName="loyalty-dlq-" + suffix)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = "loyalty-parked-" + suffix
    s3.create_bucket(Bucket=bucket)
    processed = "loyalty-processed-" + suffix
    ddb.create_table(
        TableName=processed,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "transaction_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "transaction_id", "KeyType": "HASH"}],
    )
    _state.update(processing=processing, dlq=dlq, dlq_arn=dlq_arn, bucket=bucket, processed=processed)
    return {
        "SELFHEAL_REPLAY_PROCESSING_QUEUE_URL": processing,
        "SELFHEAL_REPLAY_PARKING": f"s3://{bucket}/dlq/",
        "SELFHEAL_REPLAY_PROCESSED_TABLE": processed,
        # A one-second backoff base, so the demo can read the replays back at once.
        "SELFHEAL_REPLAY_BASE_DELAY_SECONDS": "1",
    }


def _tx(tx, points, kind="earn", **extra):
    return json.dumps({"transaction_id": tx, "member_id": "m-42", "points": points, "kind": kind, **extra})


def _count_attr(n):
    return {"replay-count": {"DataType": "Number", "StringValue": str(n)}}


# (what it is, body, message attributes)
DLQ_CONTENTS = [
    ("good", _tx("tx-5001", 150, store="web"), {"trace-id": {"DataType": "String", "StringValue": "abc-1"}}),
    ("good, replayed once before", _tx("tx-5002", -40, "redeem"), _count_attr(1)),
    ("good", _tx("tx-5003", 25, "adjust"), {}),
    ("poison: not JSON", "{transaction_id: tx-5004", {}),
    ("poison: zero points", _tx("tx-5005", 0), {}),
    ("already applied", _tx("tx-5006", 80), {}),
    ("replayed 3 times already", _tx("tx-5007", 10), _count_attr(3)),
]


def _depth(demo, url):
    a = demo.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(a.get(k, 0)) for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"))


def _parked(demo):
    s3 = demo.client("s3")
    out = {}
    for o in s3.list_objects_v2(Bucket=_state["bucket"]).get("Contents", []):
        doc = json.loads(s3.get_object(Bucket=_state["bucket"], Key=o["Key"])["Body"].read())
        out[doc["source"]["message_id"]] = doc
    return out


def _replays(demo):
    sqs, out = demo.client("sqs"), {}
    time.sleep(2.5)  # the backoff delay (1 s, 2 s) set in setup()
    while True:
        msgs = sqs.receive_message(
            QueueUrl=_state["processing"], MaxNumberOfMessages=10, VisibilityTimeout=600, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
            out[attrs.get("idempotency-key")] = attrs


def _lambda_event(msgs):
    records = []
    for m in msgs:
        attrs = {}
        for k, v in m.get("MessageAttributes", {}).items():
            a = {"dataType": v["DataType"], "stringListValues": [], "binaryListValues": []}
            if "StringValue" in v:
                a["stringValue"] = v["StringValue"]
            if "BinaryValue" in v:
                a["binaryValue"] = base64.b64encode(v["BinaryValue"]).decode()
            attrs[k] = a
        records.append({
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": attrs, "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs", "eventSourceARN": _state["dlq_arn"], "awsRegion": "us-east-1",
        })
    return {"Records": records}


def run(demo):
    sqs, ddb = demo.client("sqs"), demo.client("dynamodb")
    ddb.put_item(TableName=_state["processed"], Item={"transaction_id": {"S": "tx-5006"}})
    ids = {}
    for what, body, attrs in DLQ_CONTENTS:
        mid = sqs.send_message(QueueUrl=_state["dlq"], MessageBody=body, MessageAttributes=attrs)["MessageId"]
        ids[mid] = what
    demo.say(f"DLQ holds {len(DLQ_CONTENTS)} transactions; tx-5006 is already in the loyalty service's processed table.")
    dlq_before = _depth(demo, _state["dlq"])

    # What the event source mapping does: receive a batch, invoke, delete what did not fail.
    msgs = sqs.receive_message(
        QueueUrl=_state["dlq"], MaxNumberOfMessages=10, VisibilityTimeout=30,
        MessageAttributeNames=["All"], AttributeNames=["All"],
    ).get("Messages", [])
    event = _lambda_event(msgs)
    response = demo.invoke("replay-transactions", event)
    if "error" in response:
        demo.show("DLQ batch", "failed", f"function returned an error: {response['error']}")
        demo.expect("the batch is handled", False)
        return
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    for m in msgs:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=_state["dlq"], ReceiptHandle=m["ReceiptHandle"])

    replays, parked = _replays(demo), _parked(demo)
    decisions = {}
    for m in msgs:
        what = ids.get(m["MessageId"], "?")
        try:
            tx = json.loads(m["Body"]).get("transaction_id")
        except ValueError:
            tx = None
        if m["MessageId"] in failed:
            demo.show(what, "failed", "returned to the DLQ for a later retry")
            decisions[what + (tx or "")] = "failed"
        elif m["MessageId"] in parked:
            doc = parked[m["MessageId"]]
            demo.show(what, "acted", f"parked ({doc['reason']}): {doc['detail']}", f"s3://{_state['bucket']}/ ... {doc['reason']}/")
            decisions[what + (tx or "")] = "parked-" + doc["reason"]
        elif tx in replays:
            demo.show(what, "acted", f"{tx} replayed", f"processing queue, replay-count {replays[tx].get('replay-count')}")
            decisions[what + (tx or "")] = "replayed"
        else:
            demo.show(what, "skipped", f"{tx} already applied: not replayed")
            decisions[what + (tx or "")] = "skipped"

    demo.before_after("DLQ depth", dlq_before, _depth(demo, _state["dlq"]))
    demo.before_after("processing queue (replays)", 0, len(replays))
    demo.before_after("parked objects", 0, len(parked))
    demo.expect("nothing is reported failed", not failed)
    demo.expect("three transactions replayed", sorted(replays) == ["tx-5001", "tx-5002", "tx-5003"])
    demo.expect("replay-count incremented", replays.get("tx-5002", {}).get("replay-count") == "2")
    demo.expect("two poison and one exhausted parked", sorted(d["reason"] for d in parked.values()) == ["exhausted", "poison", "poison"])
    demo.expect("the applied transaction is skipped", "tx-5006" not in replays)

    # SQS delivers at least once: the same batch again must change nothing.
    again = demo.invoke("replay-transactions", event)
    more = _replays(demo)
    demo.show("the same batch delivered again", "skipped", "every message is in the idempotency ledger as handled", f"{len(more)} new replays, {len(_parked(demo)) - len(parked)} new parks")
    demo.expect("a duplicate delivery replays nothing", not more and not again.get("batchItemFailures"))

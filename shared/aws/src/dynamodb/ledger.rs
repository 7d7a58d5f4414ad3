//! The guardrails' ledger in DynamoDB behind the [`Ledger`] port: one item per target and one
//! per function (its fleet record), keyed by `pk`, with a TTL attribute `expires_at` so old
//! items clean themselves up. Every write is conditional on the version read; the target's
//! reservation and the function's fleet record are written in one `TransactWriteItems`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use selfheal_core::ports::ledger::{
    FleetAction, FleetAlarm, FleetRecord, Ledger, LedgerError, LedgerWrite, TargetRecord,
};
use selfheal_core::AwsError;

use super::{batch_get, cancellation_reasons, n, s, Item, KEY_ATTRIBUTE, TTL_ATTRIBUTE};
use crate::error::from_sdk;

pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn malformed(key: &str, detail: &str) -> LedgerError {
    LedgerError::Malformed {
        key: key.to_string(),
        detail: detail.to_string(),
    }
}

fn version(key: &str, item: &Item) -> Result<u64, LedgerError> {
    item.get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| malformed(key, "missing numeric attribute version"))
}

fn numbers(key: &str, item: &Item, name: &str) -> Result<Vec<i64>, LedgerError> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_l()
            .map_err(|_| malformed(key, &format!("attribute {name} is not a list")))?
            .iter()
            .map(|a| a.as_n().ok().and_then(|n| n.parse::<i64>().ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed(key, &format!("attribute {name} holds a non-number"))),
    }
}

fn parse_target(key: &str, item: &Item) -> Result<TargetRecord, LedgerError> {
    Ok(TargetRecord {
        version: version(key, item)?,
        actions: numbers(key, item, "actions")?,
        failures: numbers(key, item, "failures")?,
    })
}

/// One entry of a fleet list: a map with `at` (number), `target` and optionally `group`.
fn entry(key: &str, v: &AttributeValue) -> Result<(i64, String, Option<String>), LedgerError> {
    let bad = || malformed(key, "a fleet entry is not {at, target[, group]}");
    let m = v.as_m().map_err(|_| bad())?;
    let at = m
        .get("at")
        .and_then(|a| a.as_n().ok())
        .and_then(|a| a.parse().ok())
        .ok_or_else(bad)?;
    let target = m
        .get("target")
        .and_then(|t| t.as_s().ok())
        .cloned()
        .ok_or_else(bad)?;
    let group = m.get("group").and_then(|g| g.as_s().ok()).cloned();
    Ok((at, target, group))
}

fn entries(
    key: &str,
    item: &Item,
    name: &str,
) -> Result<Vec<(i64, String, Option<String>)>, LedgerError> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_l()
            .map_err(|_| malformed(key, &format!("attribute {name} is not a list")))?
            .iter()
            .map(|e| entry(key, e))
            .collect(),
    }
}

fn parse_fleet(key: &str, item: &Item) -> Result<FleetRecord, LedgerError> {
    Ok(FleetRecord {
        version: version(key, item)?,
        actions: entries(key, item, "actions")?
            .into_iter()
            .map(|(at, target, group)| FleetAction { at, target, group })
            .collect(),
        alarmed: entries(key, item, "alarmed")?
            .into_iter()
            .map(|(at, target, _)| FleetAlarm { at, target })
            .collect(),
        tripped_at: item
            .get("tripped_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
    })
}

fn entry_value(at: i64, target: &str, group: Option<&str>) -> AttributeValue {
    let mut m = HashMap::from([("at".to_string(), n(at)), ("target".to_string(), s(target))]);
    if let Some(g) = group {
        m.insert("group".to_string(), s(g));
    }
    AttributeValue::M(m)
}

/// The item a write stores.
fn item(w: &LedgerWrite) -> Item {
    let mut item: Item = HashMap::new();
    let (key, expires_at) = match w {
        LedgerWrite::Target {
            key,
            record,
            expires_at,
            ..
        } => {
            item.insert("version".into(), n(record.version));
            let list = |v: &[i64]| AttributeValue::L(v.iter().map(|a| n(*a)).collect());
            item.insert("actions".into(), list(&record.actions));
            item.insert("failures".into(), list(&record.failures));
            (key, expires_at)
        }
        LedgerWrite::Fleet {
            key,
            record,
            expires_at,
            ..
        } => {
            item.insert("version".into(), n(record.version));
            let actions = record
                .actions
                .iter()
                .map(|a| entry_value(a.at, &a.target, a.group.as_deref()))
                .collect();
            let alarmed = record
                .alarmed
                .iter()
                .map(|a| entry_value(a.at, &a.target, None))
                .collect();
            item.insert("actions".into(), AttributeValue::L(actions));
            item.insert("alarmed".into(), AttributeValue::L(alarmed));
            if let Some(t) = record.tripped_at {
                item.insert("tripped_at".into(), n(t));
            }
            (key, expires_at)
        }
    };
    item.insert(KEY_ATTRIBUTE.into(), s(key.as_str()));
    item.insert(TTL_ATTRIBUTE.into(), n(*expires_at));
    item
}

fn expected_version(w: &LedgerWrite) -> u64 {
    match w {
        LedgerWrite::Target {
            expected_version, ..
        }
        | LedgerWrite::Fleet {
            expected_version, ..
        } => *expected_version,
    }
}

/// The conditional put of one write: absent when version 0 was read, else still that version.
fn put(table: &str, w: &LedgerWrite) -> Result<Put, AwsError> {
    let b = Put::builder().table_name(table).set_item(Some(item(w)));
    let b = match expected_version(w) {
        0 => b
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", KEY_ATTRIBUTE),
        v => b
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(v)),
    };
    b.build()
        .map_err(|e| AwsError::new("dynamodb:TransactWriteItems", table, e.to_string()))
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn target(&self, key: &str) -> Result<TargetRecord, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("dynamodb:GetItem", format!("{}/{key}", self.table), e))?;
        match out.item {
            None => Ok(TargetRecord::default()),
            Some(item) => parse_target(key, &item),
        }
    }

    async fn put_target(
        &self,
        key: &str,
        next: &TargetRecord,
        expected_version: u64,
        expires_at: i64,
    ) -> Result<bool, LedgerError> {
        let w = LedgerWrite::Target {
            key: key.to_string(),
            record: next.clone(),
            expected_version,
            expires_at,
        };
        self.write_all(&[w]).await
    }

    async fn read(
        &self,
        target_key: &str,
        fleet_key: &str,
    ) -> Result<(TargetRecord, FleetRecord), LedgerError> {
        let keys = [target_key.to_string(), fleet_key.to_string()];
        let items = batch_get(&self.client, &self.table, KEY_ATTRIBUTE, &keys, None).await?;
        let mut target = TargetRecord::default();
        let mut fleet = FleetRecord::default();
        for item in &items {
            match item.get(KEY_ATTRIBUTE).and_then(|k| k.as_s().ok()) {
                Some(k) if k == target_key => target = parse_target(target_key, item)?,
                Some(k) if k == fleet_key => fleet = parse_fleet(fleet_key, item)?,
                _ => {}
            }
        }
        Ok((target, fleet))
    }

    async fn write_all(&self, writes: &[LedgerWrite]) -> Result<bool, LedgerError> {
        let items = writes
            .iter()
            .map(|w| {
                Ok(TransactWriteItem::builder()
                    .put(put(&self.table, w)?)
                    .build())
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            // A transaction cancelled by a failed condition lost a race.
            Err(e)
                if cancellation_reasons(&e).is_some_and(|r| {
                    r.iter()
                        .any(|c| c.as_deref() == Some("ConditionalCheckFailed"))
                }) =>
            {
                Ok(false)
            }
            Err(e) => Err(from_sdk(
                "dynamodb:TransactWriteItems",
                format!(
                    "{}/{}",
                    self.table,
                    writes
                        .iter()
                        .map(LedgerWrite::key)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                e,
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_records_round_trip() {
        let record = FleetRecord {
            version: 3,
            actions: vec![FleetAction {
                at: 10,
                target: "i-1".into(),
                group: Some("web".into()),
            }],
            alarmed: vec![FleetAlarm {
                at: 11,
                target: "i-2".into(),
            }],
            tripped_at: Some(12),
        };
        let w = LedgerWrite::Fleet {
            key: "f#fleet".into(),
            record: record.clone(),
            expected_version: 2,
            expires_at: 99,
        };
        assert_eq!(parse_fleet("f#fleet", &item(&w)).unwrap(), record);
        let t = TargetRecord {
            version: 1,
            actions: vec![5],
            failures: vec![4],
        };
        let w = LedgerWrite::Target {
            key: "f#t".into(),
            record: t.clone(),
            expected_version: 0,
            expires_at: 99,
        };
        assert_eq!(parse_target("f#t", &item(&w)).unwrap(), t);
    }
}

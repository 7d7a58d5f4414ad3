//! The guardrails' ledger in DynamoDB behind the [`Ledger`] port: one item per target or
//! budget, keyed by `pk`, with a TTL attribute `expires_at` so old items clean themselves up.
//! Every write is conditional.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use selfheal_core::ports::ledger::{Ledger, LedgerError, TargetRecord};

use super::{is_condition_failure, n, s, KEY_ATTRIBUTE, TTL_ATTRIBUTE};
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
        let Some(item) = out.item else {
            return Ok(TargetRecord::default());
        };
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| malformed(key, "missing numeric attribute version"))?;
        let actions = match item.get("actions") {
            None => Vec::new(),
            Some(v) => v
                .as_l()
                .map_err(|_| malformed(key, "attribute actions is not a list"))?
                .iter()
                .map(|a| a.as_n().ok().and_then(|n| n.parse::<i64>().ok()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| malformed(key, "attribute actions holds a non-number"))?,
        };
        Ok(TargetRecord { version, actions })
    }

    async fn put_target(
        &self,
        key: &str,
        next: &TargetRecord,
        expected_version: u64,
        expires_at: i64,
    ) -> Result<bool, LedgerError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, s(key))
            .item("version", n(next.version))
            .item(
                "actions",
                AttributeValue::L(next.actions.iter().map(|a| n(*a)).collect()),
            )
            .item(TTL_ATTRIBUTE, n(expires_at));
        req = if expected_version == 0 {
            req.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", KEY_ATTRIBUTE)
        } else {
            req.condition_expression("#v = :v")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", n(expected_version))
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(from_sdk("dynamodb:PutItem", format!("{}/{key}", self.table), e).into()),
        }
    }

    async fn take_budget(&self, key: &str, cap: u32, expires_at: i64) -> Result<bool, LedgerError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key))
            .update_expression("ADD #used :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#used) OR #used < :cap")
            .expression_attribute_names("#used", "used")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(cap))
            .expression_attribute_values(":ttl", n(expires_at))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => {
                Err(from_sdk("dynamodb:UpdateItem", format!("{}/{key}", self.table), e).into())
            }
        }
    }

    async fn return_budget(&self, key: &str) -> Result<(), LedgerError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key))
            .update_expression("ADD #used :minus")
            .condition_expression("#used > :zero")
            .expression_attribute_names("#used", "used")
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(()),
            Err(e) => {
                Err(from_sdk("dynamodb:UpdateItem", format!("{}/{key}", self.table), e).into())
            }
        }
    }
}

//! Idempotency records in the ledger table behind the [`IdempotencyLedger`] port: claims with a
//! lease made in `TransactWriteItems` requests (with the optional budget counter in the same
//! transaction), reads in `BatchGetItem`, settles in `BatchWriteItem`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use selfheal_core::ports::idempotency::{
    Budget, Claim, ClaimResult, IdempotencyLedger, Settle, State,
};
use selfheal_core::AwsError;

use super::{backoff, batch_get, cancellation_reasons, n, s, KEY_ATTRIBUTE, ROUNDS, TTL_ATTRIBUTE};
use crate::error::from_sdk;

/// Items per `TransactWriteItems` request: DynamoDB allows 100; one slot is the budget's.
const CLAIMS_PER_TRANSACTION: usize = 99;
/// Requests per `BatchWriteItem` request (a DynamoDB limit).
const WRITES_PER_BATCH: usize = 25;

const IN_PROGRESS: &str = "in-progress";
const DONE: &str = "done";

pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

/// Reads an item; `None` for an item this module did not write (it is then treated as
/// absent only by reads — a claim's condition still refuses to overwrite it).
fn parse_state(item: &HashMap<String, AttributeValue>) -> Option<State> {
    match text(item, "state")?.as_str() {
        IN_PROGRESS => Some(State::InProgress {
            lease_until: num(item, "lease_until")?,
            owner: text(item, "owner").unwrap_or_default(),
        }),
        DONE => Some(State::Done {
            outcome: text(item, "outcome").unwrap_or_default(),
            detail: text(item, "detail").unwrap_or_default(),
            at: num(item, "at").unwrap_or_default(),
        }),
        _ => None,
    }
}

impl DynamoIdempotency {
    fn claim_item(&self, c: &Claim, now: i64) -> Result<TransactWriteItem, AwsError> {
        let put = Put::builder()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, s(&c.key))
            .item("state", s(IN_PROGRESS))
            .item("owner", s(&c.owner))
            .item("lease_until", n(c.lease_until))
            .item(TTL_ATTRIBUTE, n(c.expires_at))
            .condition_expression(
                "attribute_not_exists(#pk) OR (#state = :inprogress AND #lease <= :now)",
            )
            .expression_attribute_names("#pk", KEY_ATTRIBUTE)
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(|e| {
                AwsError::new("dynamodb:TransactWriteItems", &self.table, e.to_string())
            })?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn budget_item(&self, b: &Budget, units: u32) -> Result<TransactWriteItem, AwsError> {
        // DynamoDB conditions cannot add, so "used + units <= cap" is "used <= cap - units".
        let room = b.cap.saturating_sub(units);
        let update = Update::builder()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(&b.key))
            .update_expression("ADD #used :units SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#used) OR #used <= :room")
            .expression_attribute_names("#used", "used")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":units", n(units))
            .expression_attribute_values(":room", n(room))
            .expression_attribute_values(":ttl", n(b.expires_at))
            .build()
            .map_err(|e| {
                AwsError::new("dynamodb:TransactWriteItems", &self.table, e.to_string())
            })?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Units left in the budget (0 when it cannot be read as a number).
    async fn budget_room(&self, b: &Budget) -> Result<u32, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(&b.key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("dynamodb:GetItem", &self.table, e))?;
        let used = out.item.as_ref().and_then(|i| num(i, "used")).unwrap_or(0);
        Ok(u32::try_from(i64::from(b.cap) - used).unwrap_or(0))
    }

    /// Claims one chunk; loops when the transaction is cancelled, dropping what cannot be
    /// claimed, until the rest succeeds.
    async fn claim_chunk(
        &self,
        claims: &[Claim],
        budget: Option<&Budget>,
        now: i64,
        results: &mut [ClaimResult],
    ) -> Result<(), AwsError> {
        // Indices (into `claims`) still being tried.
        let mut pending: Vec<usize> = (0..claims.len()).collect();
        // Cleared once the budget is found exhausted: budgeted claims are then refused.
        let mut use_budget = true;
        for round in 0..ROUNDS * 2 {
            let budgeted: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| claims.get(i).is_some_and(|c| c.uses_budget))
                .collect();
            if budget.is_some() && !use_budget {
                for &i in &budgeted {
                    if let Some(r) = results.get_mut(i) {
                        *r = ClaimResult::BudgetRefused;
                    }
                }
                pending.retain(|i| !budgeted.contains(i));
            }
            if pending.is_empty() {
                return Ok(());
            }
            let units = if use_budget { budgeted.len() as u32 } else { 0 };
            let budget_item = match budget {
                Some(b) if use_budget && units > 0 => {
                    if units > b.cap {
                        // Never more than the cap in one go: refuse the excess, try the rest.
                        let excess: Vec<usize> =
                            budgeted.iter().copied().skip(b.cap as usize).collect();
                        for &i in &excess {
                            if let Some(r) = results.get_mut(i) {
                                *r = ClaimResult::BudgetRefused;
                            }
                        }
                        pending.retain(|i| !excess.contains(i));
                        continue;
                    }
                    Some(self.budget_item(b, units)?)
                }
                _ => None,
            };
            let offset = usize::from(budget_item.is_some());
            let mut items: Vec<TransactWriteItem> = budget_item.into_iter().collect();
            for &i in &pending {
                if let Some(c) = claims.get(i) {
                    items.push(self.claim_item(c, now)?);
                }
            }
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let err = match res {
                Ok(_) => {
                    for &i in &pending {
                        if let Some(r) = results.get_mut(i) {
                            *r = ClaimResult::Claimed;
                        }
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let Some(reasons) = cancellation_reasons(&err) else {
                return Err(from_sdk("dynamodb:TransactWriteItems", &self.table, err));
            };
            let code = |k: usize| reasons.get(k).cloned().flatten();
            let failed = |c: &Option<String>| c.as_deref().is_some_and(|c| c != "None");
            let mut raced = false;
            let mut over_budget = false;
            if offset == 1 {
                match code(0).as_deref() {
                    Some("ConditionalCheckFailed") => over_budget = true,
                    Some("None") | None => {}
                    Some(_) => raced = true,
                }
            }
            let mut next = Vec::with_capacity(pending.len());
            for (k, &i) in pending.iter().enumerate() {
                match code(k + offset).as_deref() {
                    Some("ConditionalCheckFailed") => {
                        if let Some(r) = results.get_mut(i) {
                            *r = ClaimResult::Conflict;
                        }
                    }
                    // Lost to a concurrent transaction on the same item: try again.
                    Some(c) if c != "None" => {
                        raced = true;
                        next.push(i);
                    }
                    _ => next.push(i),
                }
            }
            if !reasons.iter().any(failed) {
                // Cancelled without a reason we can act on: give up on this chunk.
                return Err(from_sdk("dynamodb:TransactWriteItems", &self.table, err));
            }
            pending = next;
            if over_budget {
                // Take what room is left, in order; refuse the rest.
                let room = match budget {
                    Some(b) => self.budget_room(b).await? as usize,
                    None => 0,
                };
                if room == 0 {
                    use_budget = false;
                } else {
                    let mut seen = 0;
                    pending.retain(|&i| {
                        if !claims.get(i).is_some_and(|c| c.uses_budget) {
                            return true;
                        }
                        seen += 1;
                        if seen > room {
                            if let Some(r) = results.get_mut(i) {
                                *r = ClaimResult::BudgetRefused;
                            }
                            return false;
                        }
                        true
                    });
                }
            }
            if raced {
                backoff(round).await;
            }
        }
        Err(AwsError {
            operation: "dynamodb:TransactWriteItems",
            resource: self.table.clone(),
            code: Some("TransactionConflict".into()),
            message: "claims kept losing races with concurrent transactions".into(),
            retryable: true,
        })
    }
}

#[async_trait]
impl IdempotencyLedger for DynamoIdempotency {
    async fn entries(&self, keys: &[String]) -> Result<HashMap<String, State>, AwsError> {
        let items = batch_get(&self.client, &self.table, KEY_ATTRIBUTE, keys, None).await?;
        Ok(items
            .iter()
            .filter_map(|item| Some((text(item, KEY_ATTRIBUTE)?, parse_state(item)?)))
            .collect())
    }

    async fn claim(
        &self,
        claims: &[Claim],
        budget: Option<&Budget>,
        now: i64,
    ) -> Result<Vec<ClaimResult>, AwsError> {
        let mut results = vec![ClaimResult::Conflict; claims.len()];
        let mut start = 0;
        for chunk in claims.chunks(CLAIMS_PER_TRANSACTION) {
            let end = start + chunk.len();
            if let Some(slots) = results.get_mut(start..end) {
                self.claim_chunk(chunk, budget, now, slots).await?;
            }
            start = end;
        }
        Ok(results)
    }

    async fn settle(&self, done: &[Settle], release: &[String]) -> Result<(), AwsError> {
        // One write per key (BatchWriteItem refuses duplicates); a settle wins over a release.
        let mut writes: BTreeMap<&str, WriteRequest> = BTreeMap::new();
        for key in release {
            let del = DeleteRequest::builder()
                .key(KEY_ATTRIBUTE, s(key))
                .build()
                .map_err(|e| {
                    AwsError::new("dynamodb:BatchWriteItem", &self.table, e.to_string())
                })?;
            writes.insert(key, WriteRequest::builder().delete_request(del).build());
        }
        for d in done {
            let put = PutRequest::builder()
                .item(KEY_ATTRIBUTE, s(&d.key))
                .item("state", s(DONE))
                .item("outcome", s(&d.outcome))
                .item("detail", s(&d.detail))
                .item("at", n(d.at))
                .item(TTL_ATTRIBUTE, n(d.expires_at))
                .build()
                .map_err(|e| {
                    AwsError::new("dynamodb:BatchWriteItem", &self.table, e.to_string())
                })?;
            writes.insert(&d.key, WriteRequest::builder().put_request(put).build());
        }
        let writes: Vec<WriteRequest> = writes.into_values().collect();
        for chunk in writes.chunks(WRITES_PER_BATCH) {
            let mut pending = chunk.to_vec();
            for round in 0..=ROUNDS {
                if pending.is_empty() {
                    break;
                }
                if round > 0 {
                    backoff(round).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| from_sdk("dynamodb:BatchWriteItem", &self.table, e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(AwsError {
                    operation: "dynamodb:BatchWriteItem",
                    resource: self.table.clone(),
                    code: Some("UnprocessedItems".into()),
                    message: format!("{} writes still unprocessed after retries", pending.len()),
                    retryable: true,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_states() {
        let item = HashMap::from([
            ("state".to_string(), s(IN_PROGRESS)),
            ("lease_until".to_string(), n(42)),
            ("owner".to_string(), s("req")),
        ]);
        assert_eq!(
            parse_state(&item),
            Some(State::InProgress {
                lease_until: 42,
                owner: "req".into()
            })
        );
        let item = HashMap::from([
            ("state".to_string(), s(DONE)),
            ("outcome".to_string(), s("replayed")),
            ("at".to_string(), n(7)),
        ]);
        assert!(matches!(
            parse_state(&item),
            Some(State::Done { at: 7, .. })
        ));
        assert_eq!(parse_state(&HashMap::new()), None);
    }
}

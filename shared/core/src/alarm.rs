//! One `Alarm` type, built from any of the three shapes in which a CloudWatch alarm reaches
//! Lambda:
//!
//! * (a) EventBridge "CloudWatch Alarm State Change" (`detail` holds the alarm);
//! * (b) an SNS event whose records carry the JSON alarm notification in `Sns.Message`;
//! * (c) the payload of a direct Lambda alarm action (`source: aws.cloudwatch`, `alarmData`).
//!
//! The structs here are deliberately lenient (everything optional, unknown fields ignored):
//! the typed events of `aws_lambda_events` require fields that metric-math and composite
//! alarms do not carry (`metricStat` on expression entries, SNS signatures) and store the
//! period as `u16`, which cannot hold a one-day period. An alarm must never be lost because
//! a field we do not use is missing.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decision::{SkipCode, SkipReason};

/// The state an alarm is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
    /// A value CloudWatch may add later; kept verbatim.
    Other(String),
}

impl AlarmState {
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "OK" => Self::Ok,
            "ALARM" => Self::Alarm,
            "INSUFFICIENT_DATA" => Self::InsufficientData,
            _ => Self::Other(s.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for AlarmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the three delivery shapes an alarm arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmShape {
    EventBridge,
    Sns,
    LambdaAction,
}

impl AlarmShape {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventBridge => "alarm/eventbridge",
            Self::Sns => "alarm/sns",
            Self::LambdaAction => "alarm/lambda-action",
        }
    }
}

/// What kind of alarm this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    /// One metric compared with a static threshold.
    Metric,
    /// Metric math: several metrics combined by expressions.
    MetricMath,
    /// A metric compared with an anomaly-detection band.
    AnomalyDetection,
    /// A rule over other alarms; carries no metrics and no dimensions.
    Composite,
}

/// One metric (or expression) the alarm evaluates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlarmMetric {
    pub id: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dimensions: BTreeMap<String, String>,
    pub expression: Option<String>,
    pub period: Option<u32>,
    pub stat: Option<String>,
    pub return_data: Option<bool>,
}

/// The numbers CloudWatch reports with a state change: what it saw and what it compared with.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evaluation {
    pub threshold: Option<f64>,
    pub comparison: Option<String>,
    pub recent_datapoints: Vec<f64>,
    pub recent_upper_thresholds: Vec<f64>,
    pub recent_lower_thresholds: Vec<f64>,
    pub period: Option<u32>,
    pub statistic: Option<String>,
}

/// A CloudWatch alarm state change, whatever shape it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub shape: AlarmShape,
    pub kind: AlarmKind,
    pub name: String,
    pub arn: Option<String>,
    pub state: AlarmState,
    pub previous_state: Option<AlarmState>,
    pub reason: String,
    pub time: Option<DateTime<Utc>>,
    pub account: Option<String>,
    pub region: Option<String>,
    /// Namespace of the (first) metric with a namespace; `None` for composite alarms.
    pub namespace: Option<String>,
    /// Name of the (first) metric with a name; `None` for composite alarms.
    pub metric_name: Option<String>,
    /// Every dimension of every metric the alarm reads (single-metric and metric-math).
    pub dimensions: BTreeMap<String, String>,
    pub metrics: Vec<AlarmMetric>,
    pub tags: BTreeMap<String, String>,
    pub evaluation: Evaluation,
}

impl Alarm {
    /// True when the alarm moved into ALARM from another state (or from an unknown one).
    pub fn entered_alarm(&self) -> bool {
        self.state == AlarmState::Alarm && self.previous_state.as_ref() != Some(&AlarmState::Alarm)
    }

    /// `OK → ALARM` (`?` for an unknown previous state).
    pub fn transition(&self) -> String {
        let from = self
            .previous_state
            .as_ref()
            .map(|s| s.as_str())
            .unwrap_or("?");
        format!("{from} → {}", self.state)
    }

    /// The facts about the alarm every audit record of an alarm-driven function carries.
    pub fn audit_details(&self) -> Value {
        serde_json::json!({
            "alarm": self.name,
            "alarm_kind": self.kind,
            "transition": self.transition(),
        })
    }

    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.get(name).map(String::as_str)
    }

    /// Every distinct value of dimension `name` across all the metrics the alarm reads, in
    /// order of appearance (a metric-math alarm may read several instances or groups).
    pub fn dimension_values(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let values = self
            .metrics
            .iter()
            .filter_map(|m| m.dimensions.get(name))
            .chain(self.dimensions.get(name));
        for v in values {
            let v = v.trim();
            if !v.is_empty() && !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        }
        out
    }

    /// The one resource named by dimension `name`, `Ok(None)` when none is, or a skip when
    /// several are: acting on one of them could touch the healthy one.
    pub fn single_target(&self, name: &str) -> Result<Option<String>, SkipReason> {
        let mut values = self.dimension_values(name);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(SkipReason::new(
                SkipCode::SeveralTargets,
                format!(
                    "alarm {} reads {} {name} values ({}); it cannot say which one is sick, so none is touched",
                    self.name,
                    values.len(),
                    values.join(", ")
                ),
            )),
        }
    }

    /// Skips an event older than `max_age` (by the alarm's state-change time; an event with
    /// no time is judged by the current state check instead).
    pub fn check_age(
        &self,
        now: DateTime<Utc>,
        max_age: std::time::Duration,
    ) -> Result<(), SkipReason> {
        let Some(at) = self.time else { return Ok(()) };
        let age = now.signed_duration_since(at);
        if age.num_seconds() > max_age.as_secs() as i64 {
            return Err(SkipReason::new(
                SkipCode::StaleEvent,
                format!(
                    "alarm {} changed state at {at}, {} s ago; events older than {} s are not acted on",
                    self.name,
                    age.num_seconds(),
                    max_age.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Namespaces of every metric the alarm reads.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.metrics.iter().filter_map(|m| m.namespace.as_deref())
    }
}

/// Why an event could not be read as an alarm.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlarmParseError {
    #[error(
        "not a CloudWatch alarm event: expected an EventBridge \"CloudWatch Alarm State Change\" \
         event, an SNS event carrying a CloudWatch alarm notification, or a CloudWatch Lambda \
         alarm action (source \"aws.cloudwatch\" with \"alarmData\"){0}"
    )]
    UnknownShape(String),
    #[error("{shape:?} alarm event is malformed: {detail}")]
    Malformed { shape: AlarmShape, detail: String },
    #[error("SNS record {index} does not carry a CloudWatch alarm notification: {detail}")]
    SnsRecord { index: usize, detail: String },
}

/// Reads every alarm in an event. An SNS event may carry several records; the other shapes
/// carry exactly one alarm.
pub fn parse_alarms(event: &Value) -> Result<Vec<Alarm>, AlarmParseError> {
    let Some(obj) = event.as_object() else {
        return Err(AlarmParseError::UnknownShape(format!(
            "; got a JSON {}",
            json_kind(event)
        )));
    };
    if obj.get("detail-type").and_then(Value::as_str) == Some("CloudWatch Alarm State Change") {
        return from_eventbridge(event).map(|a| vec![a]);
    }
    if obj.contains_key("alarmData") {
        return from_lambda_action(event).map(|a| vec![a]);
    }
    if let Some(records) = obj.get("Records").and_then(Value::as_array) {
        if records.iter().any(|r| {
            r.get("Sns").is_some()
                || r.get("EventSource").and_then(Value::as_str) == Some("aws:sns")
        }) {
            return from_sns(records);
        }
    }
    let hint = match obj.get("detail-type").and_then(Value::as_str) {
        Some(dt) => format!("; got an EventBridge event of detail-type \"{dt}\""),
        None => String::new(),
    };
    Err(AlarmParseError::UnknownShape(hint))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---- shapes (a) and (c): the camelCase alarm document -------------------------------------

#[derive(Deserialize)]
struct EventBridgeEnvelope {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    detail: AlarmDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LambdaActionEnvelope {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    alarm_arn: Option<String>,
    alarm_data: AlarmDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmDocument {
    alarm_name: String,
    state: StateDoc,
    #[serde(default)]
    previous_state: Option<StateDoc>,
    #[serde(default)]
    configuration: ConfigurationDoc,
    /// EventBridge carries alarm tags as `alarmTags` when tag propagation is on.
    #[serde(default, alias = "alarmTags")]
    tags: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateDoc {
    value: String,
    #[serde(default)]
    reason: Option<String>,
    /// A JSON document serialised as a string (sometimes an object in hand-made events).
    #[serde(default)]
    reason_data: Option<Value>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigurationDoc {
    #[serde(default)]
    metrics: Vec<MetricDoc>,
    #[serde(default)]
    alarm_rule: Option<String>,
    #[serde(default)]
    threshold_metric_id: Option<String>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    comparison_operator: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricDoc {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    metric_stat: Option<MetricStatDoc>,
    #[serde(default)]
    expression: Option<String>,
    #[serde(default)]
    return_data: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricStatDoc {
    #[serde(default)]
    metric: Option<MetricRefDoc>,
    #[serde(default)]
    period: Option<u32>,
    #[serde(default)]
    stat: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricRefDoc {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dimensions: Option<Value>,
}

struct Envelope {
    shape: AlarmShape,
    arn: Option<String>,
    account: Option<String>,
    region: Option<String>,
    time: Option<String>,
}

fn from_eventbridge(event: &Value) -> Result<Alarm, AlarmParseError> {
    let env: EventBridgeEnvelope =
        serde_json::from_value(event.clone()).map_err(|e| AlarmParseError::Malformed {
            shape: AlarmShape::EventBridge,
            detail: e.to_string(),
        })?;
    let envelope = Envelope {
        shape: AlarmShape::EventBridge,
        arn: env.resources.into_iter().find(|r| r.contains(":alarm:")),
        account: env.account,
        region: env.region,
        time: env.time,
    };
    Ok(from_document(envelope, env.detail))
}

fn from_lambda_action(event: &Value) -> Result<Alarm, AlarmParseError> {
    let env: LambdaActionEnvelope =
        serde_json::from_value(event.clone()).map_err(|e| AlarmParseError::Malformed {
            shape: AlarmShape::LambdaAction,
            detail: e.to_string(),
        })?;
    let envelope = Envelope {
        shape: AlarmShape::LambdaAction,
        arn: env.alarm_arn,
        account: env.account_id,
        region: env.region,
        time: env.time,
    };
    Ok(from_document(envelope, env.alarm_data))
}

fn from_document(env: Envelope, doc: AlarmDocument) -> Alarm {
    let metrics: Vec<AlarmMetric> = doc
        .configuration
        .metrics
        .into_iter()
        .map(|m| {
            let (namespace, name, dimensions, period, stat) = match m.metric_stat {
                Some(ms) => {
                    let (ns, n, d) = match ms.metric {
                        Some(r) => (r.namespace, r.name, dimensions_of(r.dimensions.as_ref())),
                        None => (None, None, BTreeMap::new()),
                    };
                    (ns, n, d, ms.period, ms.stat)
                }
                None => (None, None, BTreeMap::new(), None, None),
            };
            AlarmMetric {
                id: m.id,
                namespace,
                name,
                dimensions,
                expression: m.expression,
                period,
                stat,
                return_data: m.return_data,
            }
        })
        .collect();
    let reason_data = doc.state.reason_data.as_ref().and_then(reason_data_value);
    let mut evaluation = evaluation_from_reason_data(reason_data.as_ref());
    if evaluation.threshold.is_none() {
        evaluation.threshold = doc.configuration.threshold;
    }
    evaluation.comparison = doc.configuration.comparison_operator;
    let kind = classify(
        doc.configuration.alarm_rule.is_some(),
        &metrics,
        doc.configuration.threshold_metric_id.is_some(),
        evaluation.comparison.as_deref(),
    );
    let time = doc
        .state
        .timestamp
        .as_deref()
        .and_then(parse_time)
        .or_else(|| env.time.as_deref().and_then(parse_time));
    let region = env
        .region
        .or_else(|| env.arn.as_deref().and_then(|a| arn_part(a, 3)));
    let account = env
        .account
        .or_else(|| env.arn.as_deref().and_then(|a| arn_part(a, 4)));
    build(AlarmParts {
        shape: env.shape,
        kind,
        name: doc.alarm_name,
        arn: env.arn,
        state: AlarmState::parse(&doc.state.value),
        previous_state: doc.previous_state.map(|p| AlarmState::parse(&p.value)),
        reason: doc.state.reason.unwrap_or_default(),
        time,
        account,
        region,
        metrics,
        tags: tags_of(doc.tags.as_ref()),
        evaluation,
    })
}

// ---- shape (b): SNS-wrapped PascalCase alarm notification ---------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsNotification {
    alarm_name: String,
    new_state_value: String,
    #[serde(default)]
    old_state_value: Option<String>,
    #[serde(default)]
    new_state_reason: Option<String>,
    #[serde(default)]
    state_change_time: Option<String>,
    #[serde(default, rename = "AWSAccountId")]
    account_id: Option<String>,
    #[serde(default)]
    alarm_arn: Option<String>,
    #[serde(default)]
    trigger: Option<TriggerDoc>,
    #[serde(default)]
    alarm_rule: Option<String>,
    #[serde(default, alias = "AlarmTags")]
    tags: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TriggerDoc {
    #[serde(default)]
    metric_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    statistic: Option<String>,
    #[serde(default)]
    dimensions: Option<Value>,
    #[serde(default)]
    period: Option<u32>,
    #[serde(default)]
    comparison_operator: Option<String>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    threshold_metric_id: Option<String>,
    #[serde(default)]
    metrics: Vec<SnsMetricDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMetricDoc {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    expression: Option<String>,
    #[serde(default)]
    return_data: Option<bool>,
    #[serde(default)]
    metric_stat: Option<SnsMetricStatDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMetricStatDoc {
    #[serde(default)]
    metric: Option<SnsMetricRefDoc>,
    #[serde(default)]
    period: Option<u32>,
    #[serde(default)]
    stat: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMetricRefDoc {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Option<Value>,
}

fn from_sns(records: &[Value]) -> Result<Vec<Alarm>, AlarmParseError> {
    if records.is_empty() {
        return Err(AlarmParseError::Malformed {
            shape: AlarmShape::Sns,
            detail: "no records".into(),
        });
    }
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let message = record
                .get("Sns")
                .and_then(|s| s.get("Message"))
                .and_then(Value::as_str)
                .ok_or_else(|| AlarmParseError::SnsRecord {
                    index,
                    detail: "missing Sns.Message string".into(),
                })?;
            let n: SnsNotification =
                serde_json::from_str(message).map_err(|e| AlarmParseError::SnsRecord {
                    index,
                    detail: e.to_string(),
                })?;
            Ok(from_sns_notification(n))
        })
        .collect()
}

fn from_sns_notification(n: SnsNotification) -> Alarm {
    let trigger = n.trigger.unwrap_or_default();
    let mut metrics = Vec::new();
    if trigger.metric_name.is_some() || trigger.namespace.is_some() {
        metrics.push(AlarmMetric {
            id: None,
            namespace: trigger.namespace.clone(),
            name: trigger.metric_name.clone(),
            dimensions: dimensions_of(trigger.dimensions.as_ref()),
            expression: None,
            period: trigger.period,
            stat: trigger.statistic.clone(),
            return_data: Some(true),
        });
    }
    for m in trigger.metrics {
        let (namespace, name, dimensions, period, stat) = match m.metric_stat {
            Some(ms) => {
                let (ns, n, d) = match ms.metric {
                    Some(r) => (
                        r.namespace,
                        r.metric_name,
                        dimensions_of(r.dimensions.as_ref()),
                    ),
                    None => (None, None, BTreeMap::new()),
                };
                (ns, n, d, ms.period, ms.stat)
            }
            None => (None, None, BTreeMap::new(), None, None),
        };
        metrics.push(AlarmMetric {
            id: m.id,
            namespace,
            name,
            dimensions,
            expression: m.expression,
            period,
            stat,
            return_data: m.return_data,
        });
    }
    let reason = n.new_state_reason.unwrap_or_default();
    // The SNS notification has no reasonData: the datapoints are only in the reason text.
    let evaluation = Evaluation {
        threshold: trigger.threshold,
        comparison: trigger.comparison_operator.clone(),
        recent_datapoints: datapoints_from_reason(&reason),
        period: trigger.period,
        statistic: trigger.statistic,
        ..Evaluation::default()
    };
    let kind = classify(
        n.alarm_rule.is_some(),
        &metrics,
        trigger.threshold_metric_id.is_some(),
        trigger.comparison_operator.as_deref(),
    );
    let arn = n.alarm_arn;
    build(AlarmParts {
        shape: AlarmShape::Sns,
        kind,
        name: n.alarm_name,
        // The notification's `Region` is a display name ("US East (N. Virginia)"); the ARN
        // has the code.
        region: arn.as_deref().and_then(|a| arn_part(a, 3)),
        account: n
            .account_id
            .or_else(|| arn.as_deref().and_then(|a| arn_part(a, 4))),
        arn,
        state: AlarmState::parse(&n.new_state_value),
        previous_state: n.old_state_value.as_deref().map(AlarmState::parse),
        reason,
        time: n.state_change_time.as_deref().and_then(parse_time),
        metrics,
        tags: tags_of(n.tags.as_ref()),
        evaluation,
    })
}

// ---- common pieces -----------------------------------------------------------------------

struct AlarmParts {
    shape: AlarmShape,
    kind: AlarmKind,
    name: String,
    arn: Option<String>,
    state: AlarmState,
    previous_state: Option<AlarmState>,
    reason: String,
    time: Option<DateTime<Utc>>,
    account: Option<String>,
    region: Option<String>,
    metrics: Vec<AlarmMetric>,
    tags: BTreeMap<String, String>,
    evaluation: Evaluation,
}

fn build(p: AlarmParts) -> Alarm {
    let mut dimensions = BTreeMap::new();
    for m in &p.metrics {
        for (k, v) in &m.dimensions {
            dimensions.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let namespace = p.metrics.iter().find_map(|m| m.namespace.clone());
    let metric_name = p.metrics.iter().find_map(|m| m.name.clone());
    Alarm {
        shape: p.shape,
        kind: p.kind,
        name: p.name,
        arn: p.arn,
        state: p.state,
        previous_state: p.previous_state,
        reason: p.reason,
        time: p.time,
        account: p.account,
        region: p.region,
        namespace,
        metric_name,
        dimensions,
        metrics: p.metrics,
        tags: p.tags,
        evaluation: p.evaluation,
    }
}

fn classify(
    composite: bool,
    metrics: &[AlarmMetric],
    has_threshold_metric: bool,
    comparison: Option<&str>,
) -> AlarmKind {
    let anomaly_expression = metrics.iter().any(|m| {
        m.expression
            .as_deref()
            .is_some_and(|e| e.to_ascii_uppercase().contains("ANOMALY_DETECTION_BAND"))
    });
    let band_comparison = comparison.is_some_and(|c| {
        c.contains("LowerOrGreaterThanUpper")
            || c.contains("UpperThreshold")
            || c.contains("LowerThreshold")
    });
    if composite && metrics.is_empty() {
        AlarmKind::Composite
    } else if anomaly_expression || has_threshold_metric || band_comparison {
        AlarmKind::AnomalyDetection
    } else if metrics.iter().any(|m| m.expression.is_some()) || metrics.len() > 1 {
        AlarmKind::MetricMath
    } else {
        AlarmKind::Metric
    }
}

/// Dimensions come as a map (`{"InstanceId": "i-1"}`) in EventBridge and Lambda-action events
/// and as a list (`[{"name": "InstanceId", "value": "i-1"}]`) in SNS notifications; accept both
/// everywhere.
fn dimensions_of(v: Option<&Value>) -> BTreeMap<String, String> {
    pairs_of(v, &["name", "Name"], &["value", "Value"])
}

/// Tags as a map or as a list of `{Key, Value}` (both spellings).
fn tags_of(v: Option<&Value>) -> BTreeMap<String, String> {
    pairs_of(v, &["Key", "key", "name", "Name"], &["Value", "value"])
}

/// A map of scalars, or a list of items naming their key and value under one of the given
/// spellings (the first present wins); anything else is skipped.
fn pairs_of(v: Option<&Value>, keys: &[&str], values: &[&str]) -> BTreeMap<String, String> {
    let field = |item: &Value, names: &[&str]| {
        names
            .iter()
            .find_map(|n| item.get(*n))
            .and_then(scalar_string)
    };
    match v {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), scalar_string(v)?)))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| Some((field(item, keys)?, field(item, values)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn reason_data_value(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Object(_) => Some(v.clone()),
        _ => None,
    }
}

fn evaluation_from_reason_data(rd: Option<&Value>) -> Evaluation {
    let Some(rd) = rd else {
        return Evaluation::default();
    };
    let floats = |key: &str| -> Vec<f64> {
        rd.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    Evaluation {
        threshold: rd.get("threshold").and_then(Value::as_f64),
        comparison: None,
        recent_datapoints: floats("recentDatapoints"),
        recent_upper_thresholds: floats("recentUpperThresholds"),
        recent_lower_thresholds: floats("recentLowerThresholds"),
        period: rd
            .get("period")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
        statistic: rd
            .get("statistic")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// Pulls the datapoints out of a reason such as
/// `Threshold Crossed: 2 out of the last 2 datapoints [91.5 (21/11/26 06:00:00), 88.0 (...)]`.
fn datapoints_from_reason(reason: &str) -> Vec<f64> {
    let Some(start) = reason.find('[') else {
        return Vec::new();
    };
    let Some(len) = reason[start..].find(']') else {
        return Vec::new();
    };
    reason[start + 1..start + len]
        .split(',')
        .filter_map(|part| part.split_whitespace().next())
        .filter_map(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .collect()
}

/// CloudWatch writes `2023-08-04T12:36:15.490+0000` (no colon in the offset), which is not
/// RFC 3339; accept that, RFC 3339, and a naive UTC time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// `arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME` → part `i` (0-based), if not empty.
fn arn_part(arn: &str, i: usize) -> Option<String> {
    arn.split(':')
        .nth(i)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn math_alarm(ids: &[&str], time: &str) -> Alarm {
        let metrics: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"id": format!("m{i}"), "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "StatusCheckFailed", "dimensions": {"InstanceId": id}}, "period": 60, "stat": "Maximum"}, "returnData": false}))
            .chain([json!({"id": "e1", "expression": "MAX(METRICS())", "returnData": true})])
            .collect();
        let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "time": time,
            "detail": {"alarmName": "a", "state": {"value": "ALARM", "timestamp": time}, "previousState": {"value": "OK"},
                       "configuration": {"metrics": metrics}}});
        parse_alarms(&ev).unwrap().remove(0)
    }

    /// Issue 13: structure-aware fuzzing of the three alarm shapes (from every alarm sample
    /// in events/): never a panic, every rejection one line. `SELFHEAL_FUZZ_CASES` sizes it.
    #[test]
    fn fuzzed_alarm_events_never_panic_and_reject_in_one_line() {
        let seeds: Vec<Value> = ["reboot-instance", "scale-group"]
            .iter()
            .flat_map(|f| crate::samples::for_function(f).unwrap())
            .map(|(_, v)| v)
            .collect();
        assert!(seeds.len() >= 10);
        let report = crate::testing::fuzz::run(&seeds, crate::testing::fuzz::cases(), 13, |v| {
            parse_alarms(v)
        });
        crate::testing::fuzz::assert_clean("alarm events", &report);
        assert!(report.accepted > 0 && report.rejected > 0, "{report:?}");
    }

    #[test]
    fn several_targets_are_refused() {
        let two = math_alarm(&["i-a", "i-b"], "2026-11-30T10:00:00Z");
        assert_eq!(two.dimension_values("InstanceId"), vec!["i-a", "i-b"]);
        assert_eq!(
            two.single_target("InstanceId").unwrap_err().code,
            SkipCode::SeveralTargets
        );
        let same = math_alarm(&["i-a", " i-a"], "2026-11-30T10:00:00Z");
        assert_eq!(
            same.single_target("InstanceId").unwrap(),
            Some("i-a".into())
        );
        assert_eq!(same.single_target("AutoScalingGroupName").unwrap(), None);
    }

    #[test]
    fn old_events_are_stale() {
        let a = math_alarm(&["i-a"], "2026-11-30T04:00:00Z");
        let now = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(
            a.check_age(now, hour).unwrap_err().code,
            SkipCode::StaleEvent
        );
        assert!(a.check_age(now, hour * 7).is_ok());
    }

    fn eventbridge(state: &str, prev: &str, metrics: Value) -> Value {
        json!({
            "version": "0", "id": "1", "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch", "account": "123456789012",
            "time": "2026-11-21T06:00:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu-high"],
            "detail": {
                "alarmName": "cpu-high",
                "state": {"value": state, "reason": "r", "timestamp": "2026-11-21T06:00:00.123+0000",
                          "reasonData": "{\"version\":\"1.0\",\"threshold\":80.0,\"recentDatapoints\":[95.0,91.0],\"period\":60}"},
                "previousState": {"value": prev, "reason": "p", "timestamp": "2026-11-21T05:00:00.000+0000"},
                "configuration": {"metrics": metrics}
            }
        })
    }

    #[test]
    fn eventbridge_single_metric() {
        let ev = eventbridge(
            "ALARM",
            "OK",
            json!([{"id": "m1", "returnData": true, "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"InstanceId": "i-1"}}, "period": 60, "stat": "Average"}}]),
        );
        let a = &parse_alarms(&ev).unwrap()[0];
        assert_eq!(a.shape, AlarmShape::EventBridge);
        assert_eq!(a.kind, AlarmKind::Metric);
        assert_eq!(a.name, "cpu-high");
        assert!(a.entered_alarm());
        assert_eq!(a.dimension("InstanceId"), Some("i-1"));
        assert_eq!(a.namespace.as_deref(), Some("AWS/EC2"));
        assert_eq!(a.evaluation.threshold, Some(80.0));
        assert_eq!(a.evaluation.recent_datapoints, vec![95.0, 91.0]);
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            a.time.map(|t| t.timestamp_millis()),
            Some(
                parse_time("2026-11-21T06:00:00.123Z")
                    .unwrap()
                    .timestamp_millis()
            )
        );
    }

    #[test]
    fn metric_math_and_anomaly_are_classified() {
        let math = eventbridge(
            "ALARM",
            "OK",
            json!([{"id": "e1", "expression": "m1+m2", "returnData": true},
                   {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "NetworkIn", "dimensions": {"InstanceId": "i-9"}}, "period": 300}}]),
        );
        let a = &parse_alarms(&math).unwrap()[0];
        assert_eq!(a.kind, AlarmKind::MetricMath);
        assert_eq!(a.dimension("InstanceId"), Some("i-9"));
        let ad = eventbridge(
            "ALARM",
            "OK",
            json!([{"id": "ad1", "expression": "ANOMALY_DETECTION_BAND(m1, 2)", "returnData": true},
                   {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"InstanceId": "i-9"}}, "period": 300}}]),
        );
        assert_eq!(
            parse_alarms(&ad).unwrap()[0].kind,
            AlarmKind::AnomalyDetection
        );
    }

    #[test]
    fn sns_list_dimensions_several_records() {
        let msg = json!({"AlarmName": "a", "NewStateValue": "ALARM", "OldStateValue": "OK",
            "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [97.5 (21/11/26 06:00:00)] was greater than the threshold (80.0)",
            "StateChangeTime": "2026-11-21T06:00:00.000+0000",
            "AlarmArn": "arn:aws:cloudwatch:us-east-1:111122223333:alarm:a",
            "Trigger": {"MetricName": "CPUUtilization", "Namespace": "AWS/EC2", "Threshold": 80.0,
                        "ComparisonOperator": "GreaterThanThreshold",
                        "Dimensions": [{"value": "i-2", "name": "InstanceId"}]}});
        let ev = json!({"Records": [
            {"EventSource": "aws:sns", "Sns": {"Message": msg.to_string()}},
            {"EventSource": "aws:sns", "Sns": {"Message": msg.to_string()}}
        ]});
        let alarms = parse_alarms(&ev).unwrap();
        assert_eq!(alarms.len(), 2);
        assert_eq!(alarms[0].dimension("InstanceId"), Some("i-2"));
        assert_eq!(alarms[0].region.as_deref(), Some("us-east-1"));
        assert_eq!(alarms[0].evaluation.recent_datapoints, vec![97.5]);
        assert_eq!(alarms[0].shape, AlarmShape::Sns);
    }

    #[test]
    fn lambda_action_composite() {
        let ev = json!({"source": "aws.cloudwatch", "alarmArn": "arn:aws:cloudwatch:us-east-1:1:alarm:c",
            "accountId": "1", "time": "2026-11-21T06:00:00.000+0000", "region": "us-east-1",
            "alarmData": {"alarmName": "c", "state": {"value": "ALARM", "reason": "x"},
                          "configuration": {"alarmRule": "ALARM(a) OR ALARM(b)"}}});
        let a = &parse_alarms(&ev).unwrap()[0];
        assert_eq!(a.kind, AlarmKind::Composite);
        assert!(a.dimensions.is_empty());
        assert_eq!(a.shape, AlarmShape::LambdaAction);
    }

    #[test]
    fn unknown_shapes_say_what_was_expected() {
        for ev in [
            json!(null),
            json!([1]),
            json!({"foo": 1}),
            json!({"detail-type": "Object Created"}),
        ] {
            let err = parse_alarms(&ev).unwrap_err().to_string();
            assert!(err.contains("expected an EventBridge"), "{err}");
        }
        let bad_sns =
            json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "not json"}}]});
        assert!(matches!(
            parse_alarms(&bad_sns),
            Err(AlarmParseError::SnsRecord { index: 0, .. })
        ));
    }

    #[test]
    fn alarm_tags_are_read() {
        let mut ev = eventbridge("ALARM", "OK", json!([]));
        ev["detail"]["alarmTags"] = json!({"selfheal:scale": "in"});
        assert_eq!(
            parse_alarms(&ev).unwrap()[0]
                .tags
                .get("selfheal:scale")
                .map(String::as_str),
            Some("in")
        );
    }

    #[test]
    fn time_formats() {
        assert!(parse_time("2026-11-21T06:00:00Z").is_some());
        assert!(parse_time("2026-11-21T06:00:00.490+0000").is_some());
        assert!(parse_time("2026-11-21T06:00:00+0000").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_json(s in ".{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = parse_alarms(&v);
            }
        }

        #[test]
        fn never_panics_on_mangled_alarm(state in "[A-Z_]{0,20}", dims in proptest::collection::vec(("[a-zA-Z]{0,8}", "[ -~]{0,12}"), 0..4), reason in "[ -~]{0,80}") {
            let dims: serde_json::Map<String, Value> = dims.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let msg = json!({"AlarmName": "x", "NewStateValue": state, "NewStateReason": reason,
                             "Trigger": {"Dimensions": Value::Object(dims.clone())}});
            let ev = json!({"Records": [{"Sns": {"Message": msg.to_string()}}]});
            let _ = parse_alarms(&ev);
            let _ = parse_alarms(&eventbridge(&state, &state, json!([{"metricStat": {"metric": {"dimensions": dims}}}])));
        }
    }
}

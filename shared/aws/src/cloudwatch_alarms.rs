//! CloudWatch behind the [`Alarms`] port: `DescribeAlarms` (current state, actions,
//! comparison) and `ListTagsForResource`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::AlarmType;
use chrono::{DateTime, Utc};
use selfheal_core::alarm::AlarmState;
use selfheal_core::ports::alarms::{AlarmFacts, Alarms};
use selfheal_core::AwsError;

use crate::error::from_sdk;
use crate::tags::tag_map;

pub struct CloudWatchAlarms(pub aws_sdk_cloudwatch::Client);

fn time(t: Option<&aws_sdk_cloudwatch::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
}

#[async_trait]
impl Alarms for CloudWatchAlarms {
    async fn current(&self, name: &str) -> Result<Option<AlarmFacts>, AwsError> {
        let out = self
            .0
            .describe_alarms()
            .alarm_names(name)
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .send()
            .await
            .map_err(|e| from_sdk("cloudwatch:DescribeAlarms", name, e))?;
        if let Some(a) = out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
        {
            return Ok(Some(AlarmFacts {
                name: name.to_string(),
                arn: a.alarm_arn().map(str::to_string),
                state: AlarmState::parse(a.state_value().map(|s| s.as_str()).unwrap_or("")),
                state_updated: time(a.state_updated_timestamp()),
                alarm_actions: a.alarm_actions().to_vec(),
                comparison: a.comparison_operator().map(|c| c.as_str().to_string()),
            }));
        }
        Ok(out
            .composite_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .map(|a| AlarmFacts {
                name: name.to_string(),
                arn: a.alarm_arn().map(str::to_string),
                state: AlarmState::parse(a.state_value().map(|s| s.as_str()).unwrap_or("")),
                state_updated: time(a.state_updated_timestamp()),
                alarm_actions: a.alarm_actions().to_vec(),
                comparison: None,
            }))
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self
            .0
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| from_sdk("cloudwatch:ListTagsForResource", arn, e))?;
        Ok(tag_map(out.tags(), |t| t.key(), |t| t.value()))
    }
}

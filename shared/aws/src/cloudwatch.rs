//! CloudWatch behind the [`MetricHistory`] port: `GetMetricData`.

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use selfheal_core::anomaly::Point;
use selfheal_core::ports::metrics::{MetricHistory, MetricQuery, Window};
use selfheal_core::AwsError;

use crate::error::from_sdk;

/// CloudWatch `GetMetricData`, one request per window, all windows at once.
pub struct CloudWatchHistory(pub aws_sdk_cloudwatch::Client);

/// Largest number of pages read per window: a window holds a few hundred datapoints, far
/// below one page (100,800), so more pages mean something is wrong.
const MAX_PAGES: usize = 5;

impl CloudWatchHistory {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self(aws_sdk_cloudwatch::Client::new(sdk))
    }

    async fn window(&self, query: &MetricQuery, w: &Window) -> Result<Vec<Point>, AwsError> {
        let resource = format!("{} ({})", query.returned, describe(query));
        let queries: Vec<MetricDataQuery> = query
            .entries
            .iter()
            .map(|e| {
                let b = MetricDataQuery::builder()
                    .id(&e.id)
                    .return_data(e.id == query.returned);
                match &e.expression {
                    Some(x) => b.expression(x),
                    None => b.metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .set_namespace(e.namespace.clone())
                                    .set_metric_name(e.name.clone())
                                    .set_dimensions(Some(
                                        e.dimensions
                                            .iter()
                                            .map(|(k, v)| {
                                                Dimension::builder().name(k).value(v).build()
                                            })
                                            .collect(),
                                    ))
                                    .build(),
                            )
                            .period(w.period as i32)
                            .stat(e.stat.clone().unwrap_or_else(|| "Average".into()))
                            .build(),
                    ),
                }
                .build()
            })
            .collect();
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .0
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    w.start.timestamp(),
                ))
                .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    w.end.timestamp(),
                ))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| from_sdk("cloudwatch:GetMetricData", resource.clone(), e))?;
            for r in out.metric_data_results() {
                if r.id() != Some(query.returned.as_str()) {
                    continue;
                }
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    if v.is_finite() {
                        points.push(Point::new(t.secs(), *v));
                    }
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(points)
    }
}

#[async_trait]
impl MetricHistory for CloudWatchHistory {
    async fn history(
        &self,
        query: &MetricQuery,
        windows: &[Window],
    ) -> Result<Vec<Point>, AwsError> {
        let fetched =
            futures::future::try_join_all(windows.iter().map(|w| self.window(query, w))).await?;
        let mut points: Vec<Point> = fetched.into_iter().flatten().collect();
        points.sort_by_key(|p| p.at);
        points.dedup_by_key(|p| p.at);
        Ok(points)
    }
}

fn describe(q: &MetricQuery) -> String {
    q.entries
        .iter()
        .find(|e| e.id == q.returned)
        .map(|e| match (&e.expression, &e.namespace, &e.name) {
            (Some(x), _, _) => x.clone(),
            (None, Some(ns), Some(n)) => format!("{ns}/{n}"),
            _ => e.id.clone(),
        })
        .unwrap_or_default()
}

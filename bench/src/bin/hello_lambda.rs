//! The cold-start reference: a bare `lambda_runtime` function that echoes its event, built
//! with the same profile as the real functions.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|ev: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(ev.payload)
    }))
    .await
}

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(
        replay_transactions::FUNCTION,
        replay_transactions::Deps::from_env,
    )
    .await
}

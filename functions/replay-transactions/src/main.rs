use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal::runtime::start(
        replay_transactions::FUNCTION,
        replay_transactions::Deps::from_env,
    )
    .await
}

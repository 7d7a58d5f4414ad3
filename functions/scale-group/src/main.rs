use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(scale_group::FUNCTION, scale_group::Deps::from_env).await
}

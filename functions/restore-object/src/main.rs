use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(restore_object::FUNCTION, restore_object::Deps::from_env).await
}

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal::runtime::start(restore_object::FUNCTION, restore_object::Deps::from_env).await
}

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(reboot_instance::FUNCTION, reboot_instance::Deps::from_env).await
}

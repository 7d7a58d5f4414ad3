use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal::runtime::start(reboot_instance::FUNCTION, reboot_instance::Deps::from_env).await
}

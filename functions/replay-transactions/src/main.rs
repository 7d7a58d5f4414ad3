fn main() {
    eprintln!("{}: not implemented yet", replay_transactions::FUNCTION);
    std::process::exit(1);
}

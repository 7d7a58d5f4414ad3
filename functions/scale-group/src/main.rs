fn main() {
    eprintln!("{}: not implemented yet", scale_group::FUNCTION);
    std::process::exit(1);
}

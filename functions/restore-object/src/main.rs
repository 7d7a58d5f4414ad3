fn main() {
    eprintln!("{}: not implemented yet", restore_object::FUNCTION);
    std::process::exit(1);
}

//! The `kith` command-line tool. Its commands arrive with the node.

fn main() {
    eprintln!("kith: the command-line app is not built yet; see README.md for what runs today");
    std::process::exit(2);
}

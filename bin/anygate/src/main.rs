//! `anygate`: the command line. Today it knows `version` and `help`; `serve`, `check`,
//! `explain` and `pack-spa` arrive with their subsystems (see `docs/ARCHITECTURE.md`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

const USAGE: &str = "\
usage: anygate <command>

commands:
  version    print the version
  help       print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("version" | "--version" | "-V") => {
            println!("anygate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("anygate: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

//! `anygate`: the command line.
//!
//! - `serve -c FILE`: run the gateway.
//! - `check -c FILE`: validate a configuration and print the compiled route table.
//! - `explain -c FILE METHOD [HOST]PATH`: which rule answers a request, and why.
//! - `diagnose -c FILE`: listeners (free or held), certificates and their expiry,
//!   upstreams (one connect each), the running instance's state (its admin `/status`).
//! - `pack-spa --from DIR --to DIR`: copy a built SPA with precompressed siblings and a
//!   manifest.
//! - `version`, `help`.
//!
//! Exit status: 0 success, 1 invalid configuration, 2 bad usage.

#![forbid(unsafe_code)]

mod pack;

use anygate::{args, check, diagnose, explain};

use std::process::ExitCode;

const USAGE: &str = "\
usage: anygate <command> [options]

commands:
  serve   [-c FILE]                  run the gateway (SIGHUP reloads, SIGTERM stops)
  check   [-c FILE]                  validate FILE and print its route table
  explain [-c FILE] [--host NAME] METHOD [HOST]PATH
                                     show which rule answers a request, and why
  diagnose [-c FILE]                 ports, certificates, upstreams, the running instance
  pack-spa --from DIR --to DIR       copy a built SPA, add .br/.zst/.gz siblings and a manifest
  version                            print the version
  help                               print this help

options:
  -c, --config FILE   the configuration (.yml, .yaml, .json or .toml; default anygate.yml)

Environment variables ANYGATE__SECTION__KEY=value override the file (docs/CONFIG.md).
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    };
    let run = match command.as_str() {
        "version" | "--version" | "-V" => {
            println!(
                "anygate {} (commit {}, {}; linux-{})",
                env!("CARGO_PKG_VERSION"),
                env!("ANYGATE_COMMIT"),
                env!("ANYGATE_COMMIT_DATE"),
                std::env::consts::ARCH
            );
            return ExitCode::SUCCESS;
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "serve" => args::parse(rest, 0).map(|a| anygate::serve::run(&a.config)),
        "check" => args::parse(rest, 0).map(|a| check::run(&a)),
        "explain" => args::parse_with_host(rest, 2).map(|a| explain::run(&a)),
        "diagnose" => args::parse(rest, 0).map(|a| diagnose::run(&a)),
        "pack-spa" => pack::main(rest),
        other => Err(format!("unknown command `{other}`")),
    };
    // Every server log line is written before the process ends.
    anygate_obs::log::flush(std::time::Duration::from_secs(5));
    match run {
        Ok(code) => code,
        Err(usage) => {
            eprintln!("anygate: {usage}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

//! Starts or stops one private PostgreSQL cluster for a whole test run.
//!
//! `riptide-test-postgres start DIR` prints the server's `postgres://` URL;
//! `riptide-test-postgres stop DIR` stops it.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match args.as_slice() {
        [cmd, dir] => (cmd.as_str(), PathBuf::from(dir)),
        _ => {
            eprintln!("usage: riptide-test-postgres start|stop DIR");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        "start" => riptide_testkit::Cluster::init_and_start(&dir)
            .map(|c| println!("{}", c.url("postgres"))),
        "stop" => riptide_testkit::Cluster::stop(&dir),
        _ => {
            eprintln!("usage: riptide-test-postgres start|stop DIR");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riptide-test-postgres: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Starts or stops one private PostgreSQL cluster for a whole test run.
//!
//! `riptide-test-postgres start DIR` prints the server's `postgres://` URL;
//! `riptide-test-postgres stop DIR` stops it. `start-tls DIR` starts the TLS-only test server
//! in DIR (for `RIPTIDE_TEST_TLS_PG_DIR`); `stop DIR/pg` stops it.

use std::process::ExitCode;

use riptide_localpg::{Auth, Durability, LocalCluster};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, dir] = args.as_slice() else {
        eprintln!("usage: riptide-test-postgres start|start-tls|stop DIR");
        return ExitCode::from(2);
    };
    let cluster = LocalCluster::new(dir);
    let result = match cmd.as_str() {
        "start" => cluster
            .init(Durability::Ephemeral, &Auth::Trust)
            .and_then(|()| cluster.start(None))
            .map(|port| println!("{}", riptide_localpg::url(port, "postgres"))),
        "stop" => cluster.stop(false),
        "start-tls" => match riptide_testkit::TlsServer::start(std::path::Path::new(dir)) {
            Ok(_) => {
                println!("{dir}");
                Ok(())
            }
            Err(e) => {
                eprintln!("riptide-test-postgres: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("usage: riptide-test-postgres start|start-tls|stop DIR");
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

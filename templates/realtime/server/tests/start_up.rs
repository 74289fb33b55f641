//! The binary refuses to start on a bad environment, naming every bad variable.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn a_missing_environment_stops_start_up_naming_every_variable() {
    let dir = std::env::temp_dir().join(format!("realtime-app-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_realtime-app-server"))
        .env_clear()
        .env("APP_ROOT", &dir)
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in [
        "DIRECT_DATABASE_URL",
        "POWERSYNC_SIGNING_KEY",
        "POWERSYNC_URL",
        "POWERSYNC_API_TOKEN",
        "PORT",
    ] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dot_env_in_the_app_root_is_read_and_real_variables_win() {
    let dir = std::env::temp_dir().join(format!("realtime-app-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "DIRECT_DATABASE_URL=postgres://u@127.0.0.1:1/db\nPOWERSYNC_URL=http://127.0.0.1:1\nPOWERSYNC_API_TOKEN=t\nPORT=80\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_realtime-app-server"))
        .env_clear()
        .env("APP_ROOT", &dir)
        .env("PORT", "nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only the signing key is missing (from .env), and PORT from the real environment is bad.
    assert!(
        stderr.contains("POWERSYNC_SIGNING_KEY is missing"),
        "{stderr}"
    );
    assert!(stderr.contains("PORT is not a port number"), "{stderr}");
    for name in [
        "DIRECT_DATABASE_URL",
        "POWERSYNC_URL ",
        "POWERSYNC_API_TOKEN",
    ] {
        assert!(!stderr.contains(name), "{name} came from .env: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

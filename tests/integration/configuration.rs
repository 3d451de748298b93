//! The configuration as an operator meets it (issue 11), through the real binary:
//! `check-config` refuses what `serve` would refuse, no message shows a secret, and the
//! admin listener cannot take the callers' address.

use std::path::Path;

use meetgate::sim::{demo, SimConfig};

use crate::support::process::{prepared, run_meetgate};
use crate::support::*;

/// Replaces the first line of `config` starting with `key =` by `line`.
fn set_line(config: &Path, key: &str, line: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .to_owned();
    std::fs::write(config, text.replacen(&old, line, 1)).unwrap();
}

#[tokio::test]
async fn check_config_refuses_a_ca_file_that_serve_refuses() {
    let (_sim, dir, config) = prepared(SimConfig::demo(), &Creds::AppId, &[]).await;
    let cfg = config.to_str().unwrap();
    let (code, out) = run_meetgate(&["check-config", "--config", cfg]).await;
    assert_eq!(code, 0, "the generated config is fine: {out}");

    let d = dir.path();
    std::fs::write(d.join("not-pem.pem"), "this is not a certificate\n").unwrap();
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(d.join("a-key.pem"), key).unwrap();
    std::fs::create_dir(d.join("a-directory")).unwrap();
    for ca in ["missing.pem", "not-pem.pem", "a-key.pem", "a-directory"] {
        set_line(&config, "ca_file", &format!("ca_file = \"{ca}\""));
        let (check, check_out) = run_meetgate(&["check-config", "--config", cfg]).await;
        assert_eq!(check, 64, "check-config passes ca_file = {ca}: {check_out}");
        assert!(
            check_out.contains("`upstream.ca_file`"),
            "{ca}: {check_out}"
        );
        // What serve says about it, for the same file.
        let (serve, serve_out) = run_meetgate(&["serve", "--config", cfg]).await;
        assert_eq!(serve, 64, "{ca}: {serve_out}");
        assert!(serve_out.contains("`upstream.ca_file`"), "{serve_out}");
        // --no-secrets skips secret files only, not the trust anchors.
        let (no_secrets, out) =
            run_meetgate(&["check-config", "--no-secrets", "--config", cfg]).await;
        assert_eq!(no_secrets, 64, "{ca}: {out}");
    }
}

#[tokio::test]
async fn check_config_refuses_an_audit_key_that_serve_refuses() {
    let (_sim, dir, config) = prepared(
        SimConfig::demo(),
        &Creds::AppId,
        &[("audit", "hmac_key_file = \"audit.key\"")],
    )
    .await;
    std::fs::write(dir.path().join("audit.key"), "too short\n").unwrap();
    set_mode(&dir.path().join("audit.key"), 0o600);
    let (code, out) = run_meetgate(&["check-config", "--config", config.to_str().unwrap()]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("`audit.hmac_key_file`") && out.contains("shorter than"),
        "{out}"
    );
}

#[tokio::test]
async fn no_message_shows_a_secret_put_where_a_file_name_belongs() {
    const CANARY: &str = "s3cr3t-CANARY-value";
    let cases: [(Creds, &str, &str); 3] = [
        (Creds::AppId, "credentials", "app_key_file"),
        (Creds::Account, "credentials", "password_file"),
        (Creds::AppId, "audit", "hmac_key_file"),
    ];
    for (creds, section, key) in cases {
        let (_sim, dir, config) = prepared(
            SimConfig::demo(),
            &creds,
            &[(section, &format!("{key} = \"{CANARY}\""))],
        )
        .await;
        let cfg = config.to_str().unwrap();
        let (code, out) = run_meetgate(&["check-config", "--config", cfg]).await;
        assert_eq!(code, 64, "{out}");
        assert!(out.contains(&format!("`{section}.{key}`")), "{out}");
        assert!(
            out.contains(&format!("{}/…", dir.path().display())),
            "the directory that exists is shown: {out}"
        );
        let (_, served) = run_meetgate(&["serve", "--config", cfg]).await;
        let (_, printed) = run_meetgate(&["check-config", "--no-secrets", "--config", cfg]).await;
        for text in [&out, &served, &printed] {
            assert!(!text.contains("CANARY"), "{section}.{key}: {text}");
        }
    }
}

#[tokio::test]
async fn no_message_shows_a_secret_file_passed_as_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = [
        ("app.key", "s3cr3t-CANARY-key\n".to_owned()),
        ("password", "p@ss CANARY w0rd!\n".to_owned()),
        // A host password table written the wrong way round: its key is the password.
        (
            "host-passwords.toml",
            format!("\"CANARY-pw\" = \"{}\"\n", demo::CONFERENCE_ID),
        ),
        (
            "with-value.toml",
            "[listen]\nmax_connections = \"CANARY\"\n".to_owned(),
        ),
    ];
    for (name, content) in files {
        let path = d.join(name);
        std::fs::write(&path, content).unwrap();
        set_mode(&path, 0o600);
        for command in ["check-config", "serve"] {
            let (code, out) = run_meetgate(&[command, "--config", path.to_str().unwrap()]).await;
            assert_eq!(code, 64, "{out}");
            assert!(out.contains("line "), "a position is given: {out}");
            assert!(!out.contains("CANARY"), "{command} {name}: {out}");
        }
    }
    // The secret itself given as the config path: only the existing directory is named.
    let pasted = d.join("s3cr3t-CANARY-key");
    let (code, out) = run_meetgate(&["check-config", "--config", pasted.to_str().unwrap()]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains(&format!("{}/…", d.display())) && !out.contains("CANARY"),
        "{out}"
    );
}

#[tokio::test]
async fn check_config_refuses_the_admin_listener_on_the_callers_address() {
    let (_sim, _dir, config) = prepared(
        SimConfig::demo(),
        &Creds::AppId,
        &[
            ("listen", "addr = \"127.0.0.1:18080\""),
            ("admin", "addr = \"127.0.0.1:18080\""),
        ],
    )
    .await;
    let cfg = config.to_str().unwrap();
    let (code, out) = run_meetgate(&["check-config", "--config", cfg]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("`admin.addr`") && out.contains("listen.addr"),
        "{out}"
    );
    // Port 0 on both means two free ports: fine.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("127.0.0.1:18080", "127.0.0.1:0")).unwrap();
    let (code, out) = run_meetgate(&["check-config", "--config", cfg]).await;
    assert_eq!(code, 0, "{out}");
}

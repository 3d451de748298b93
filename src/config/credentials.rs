//! The upstream credentials: reading the secrets `[credentials]` names.
//!
//! Secrets live in files (or, when no file is configured, in `MEETGATE_APP_KEY` /
//! `MEETGATE_PASSWORD`), never in the config file. A secret file readable by group or others
//! is refused: the error names the file and the fix, never the content. Environment access
//! goes through [`Env`], so tests pass a map instead of changing the process environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use super::{shown_path, ConfigError, CredentialsConfig};
use crate::route::ConferenceId;
use crate::secret::Secret;

/// Environment variable that may hold the App ID key when `credentials.app_key_file` is unset.
pub const ENV_APP_KEY: &str = "MEETGATE_APP_KEY";
/// Environment variable that may hold the account password when `credentials.password_file`
/// is unset.
pub const ENV_PASSWORD: &str = "MEETGATE_PASSWORD";

/// Where secrets come from when no file is configured. Tests pass a map.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The upstream credentials with their secrets loaded.
#[derive(Clone)]
pub enum Credentials {
    AppId {
        app_id: String,
        app_key: Secret,
        user_id: String,
        corp_id: Option<String>,
    },
    Account {
        account: String,
        password: Secret,
    },
    HostPassword {
        passwords: HashMap<String, Secret>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AppId { app_id, .. } => write!(f, "AppId({app_id}, key [redacted])"),
            Credentials::Account { account, .. } => {
                write!(f, "Account({account}, password [redacted])")
            }
            Credentials::HostPassword { passwords } => {
                write!(f, "HostPassword({} conferences)", passwords.len())
            }
        }
    }
}

impl Credentials {
    /// Reads the secrets named by `[credentials]`.
    pub fn load(config: &CredentialsConfig, env: &dyn Env) -> Result<Credentials, ConfigError> {
        match config {
            CredentialsConfig::AppId {
                app_id,
                app_key_file,
                user_id,
                corp_id,
            } => Ok(Credentials::AppId {
                app_id: app_id.clone(),
                app_key: secret_from(
                    "credentials.app_key_file",
                    app_key_file.as_deref(),
                    ENV_APP_KEY,
                    env,
                )?,
                user_id: user_id.clone().unwrap_or_default(),
                corp_id: corp_id.clone().filter(|c| !c.is_empty()),
            }),
            CredentialsConfig::Account {
                account,
                password_file,
            } => Ok(Credentials::Account {
                account: account.clone(),
                password: secret_from(
                    "credentials.password_file",
                    password_file.as_deref(),
                    ENV_PASSWORD,
                    env,
                )?,
            }),
            CredentialsConfig::HostPassword {
                host_passwords_file,
            } => Ok(Credentials::HostPassword {
                passwords: load_host_passwords(host_passwords_file)?,
            }),
        }
    }

    /// A one-line description without secrets, for logs and `check-config`.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// A secret from its file when one is configured, else from the environment variable.
fn secret_from(
    key: &str,
    file: Option<&Path>,
    env_name: &str,
    env: &dyn Env,
) -> Result<Secret, ConfigError> {
    let value = match file {
        Some(path) => read_secret_file(key, path)?,
        None => env.var(env_name).ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!(
                    "is not set and the environment variable {env_name} is empty: set one of them"
                ),
            )
        })?,
    };
    let value = value.trim_end_matches(['\r', '\n']).to_owned();
    if value.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "the secret is empty: put the secret in the file (or the environment variable)",
        ));
    }
    Ok(Secret::new(value))
}

/// Reads a secret file. It must not be readable by group or others: a secret others can
/// read is no longer a secret. The error names the key and the file, never the content; a
/// path that names nothing is shown only up to its existing directory (see [`shown_path`]):
/// it may be the secret itself, put where the file name belongs.
pub fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: std::io::Error| {
        ConfigError::invalid(
            key,
            format!(
                "cannot read the secret file {}: {e}: set {key} to the path of the file that holds the secret",
                shown_path(path)
            ),
        )
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{} is a directory: name the file that holds the secret",
                path.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::invalid(
            key,
            format!(
                "secret file {} is readable by group or others (mode {mode:04o}): run `chmod 600 {}` (in Kubernetes, a Secret volume with fsGroup is always group-readable: copy the key to an emptyDir with mode 0400, as deploy/kubernetes does)",
                path.display(),
                path.display()
            ),
        ));
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

/// The host password table: a TOML or JSON object of conference ID → password.
fn load_host_passwords(path: &Path) -> Result<HashMap<String, Secret>, ConfigError> {
    let key = "credentials.host_passwords_file";
    let text = read_secret_file(key, path)?;
    // Parse into a map of plain strings; on failure report only the parser's position,
    // since its message could quote a password.
    let table: BTreeMap<String, String> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| {
            ConfigError::invalid(
                key,
                format!(
                    "{} is not a JSON object of \"conference ID\": \"password\" (line {}, column {})",
                    path.display(),
                    e.line(),
                    e.column()
                ),
            )
        })?
    } else {
        toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" near byte {}", s.start))
                .unwrap_or_default();
            ConfigError::invalid(
                key,
                format!(
                    "{} is not a TOML table of \"conference ID\" = \"password\"{at}",
                    path.display()
                ),
            )
        })?
    };
    let mut passwords = HashMap::with_capacity(table.len());
    for (conference, password) in table {
        // Neither key nor value is quoted: in a file written the wrong way round
        // (password = conference ID), the key is the secret.
        let Some(conference) = ConferenceId::parse(&conference) else {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{}: a key is not a conference ID (each {}); the file maps conference IDs to host passwords, e.g. \"914083136\" = \"<host password>\"",
                    path.display(),
                    ConferenceId::RULE
                ),
            ));
        };
        if password.is_empty() {
            return Err(ConfigError::invalid(
                key,
                format!("{}: the password for {conference} is empty", path.display()),
            ));
        }
        passwords.insert(conference.as_str().to_owned(), Secret::new(password));
    }
    Ok(passwords)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<super::super::Config, ConfigError> {
        super::super::Config::parse(text, Path::new("/etc/meetgate"))
    }

    const MINIMAL: &str = r#"
        [upstream]
        base_url = "https://api.meeting.huaweicloud.com"
        [credentials]
        kind = "app_id"
        app_id = "demoAppId0001"
    "#;

    #[test]
    fn app_key_comes_from_env_when_no_file_and_missing_key_is_named() {
        let c = parse(MINIMAL).unwrap();
        let mut env = HashMap::new();
        let err = Credentials::load(&c.credentials, &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credentials.app_key_file") && err.contains(ENV_APP_KEY),
            "{err}"
        );
        env.insert(ENV_APP_KEY.to_owned(), "k3y\n".to_owned());
        match Credentials::load(&c.credentials, &env).unwrap() {
            Credentials::AppId { app_key, .. } => assert_eq!(app_key.expose(), "k3y"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_password_table_rejects_bad_ids_without_echoing_passwords() {
        let dir = std::env::temp_dir().join(format!("meetgate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rooms.toml");
        let write = |path: &Path, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(path, text).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        let cfg = CredentialsConfig::HostPassword {
            host_passwords_file: file.clone(),
        };
        for table in [
            "\"91408x\" = \"s3cret-canary\"\n",
            "\"0914083136\" = \"s3cret-canary\"\n",
            // Written the wrong way round: the key is the password.
            "\"s3cret-canary\" = \"914083136\"\n",
        ] {
            write(&file, table);
            let msg = Credentials::load(&cfg, &HashMap::new())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("not a conference ID") && !msg.contains("s3cret-canary"),
                "{msg}"
            );
        }
        write(&file, "\"914083136\" = \"s3cret-canary\"\n");
        let creds = Credentials::load(&cfg, &HashMap::new()).unwrap();
        assert!(!format!("{creds:?}").contains("s3cret"));
        let json = dir.join("rooms.json");
        write(&json, "{\"914083136\": \"pw\", \"1\": 2}");
        let msg = Credentials::load(
            &CredentialsConfig::HostPassword {
                host_passwords_file: json,
            },
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("line 1"), "{msg}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_secret_file_readable_by_others_is_refused_naming_file_and_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("meetgate-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("app.key");
        std::fs::write(&key, "canary-app-key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = CredentialsConfig::AppId {
            app_id: "a".into(),
            app_key_file: Some(key.clone()),
            user_id: None,
            corp_id: None,
        };
        let msg = Credentials::load(&cfg, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("credentials.app_key_file") && msg.contains("chmod 600"),
            "{msg}"
        );
        assert!(
            msg.contains(&key.display().to_string()) && !msg.contains("canary-app-key"),
            "{msg}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Credentials::load(&cfg, &HashMap::new()).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}

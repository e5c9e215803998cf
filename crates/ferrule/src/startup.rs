//! Start-up checks that run before anything is written, and the error a user
//! sees when one fails: one line naming the setting and the fix, exit code 2.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A start-up failure the user can fix by changing a setting.
#[derive(Debug)]
pub struct StartupError {
    pub setting: String,
    pub message: String,
}

impl StartupError {
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl std::error::Error for StartupError {}

const DATA_DIR: &str = "data_dir (--data-dir, FERRULE_DATA_DIR)";

/// Checks that the data directory exists and is writable, or can be created,
/// without creating it: a start that fails later must leave nothing behind.
pub fn check_data_dir(dir: &Path) -> Result<(), StartupError> {
    let fail = |why: String| {
        StartupError::new(
            DATA_DIR,
            format!("{} {why}: choose a writable directory", dir.display()),
        )
    };
    let mut probe_dir: PathBuf = dir.to_path_buf();
    // Walk up to the nearest existing ancestor: that is where the first write lands.
    loop {
        match std::fs::metadata(&probe_dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                let what = if probe_dir == dir {
                    "is a file, not a directory".to_owned()
                } else {
                    format!(
                        "cannot be created because {} is a file",
                        probe_dir.display()
                    )
                };
                return Err(fail(what));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                match probe_dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => probe_dir = p.to_path_buf(),
                    _ => {
                        probe_dir = PathBuf::from(".");
                        break;
                    }
                }
            }
            Err(e) => return Err(fail(format!("cannot be read ({e})"))),
        }
    }
    // Permission bits lie for root and on read-only mounts; a real probe file
    // is the only honest test. It is removed at once.
    let probe = probe_dir.join(format!(".ferrule-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(fail(format!("is not writable ({e})"))),
    }
}

/// Binds a TCP listener, naming the setting when the address is taken.
pub fn bind(setting: &str, addr: SocketAddr) -> Result<std::net::TcpListener, StartupError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        let fix = match e.kind() {
            io::ErrorKind::AddrInUse => format!(
                "{addr} is already in use: stop the other process or choose another address"
            ),
            io::ErrorKind::AddrNotAvailable => {
                format!("{addr} is not an address of this machine: use 0.0.0.0 or one of its IPs")
            }
            io::ErrorKind::PermissionDenied => format!(
                "binding {addr} is not permitted: use a port above 1023 or grant the capability"
            ),
            _ => format!("cannot listen on {addr} ({e})"),
        };
        StartupError::new(setting, fix)
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StartupError::new(setting, format!("cannot configure the socket ({e})")))?;
    Ok(listener)
}

/// A loaded certificate chain and key.
#[derive(Debug)]
pub struct TlsMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads the PEM certificate chain and private key.
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsMaterial, StartupError> {
    const CERT: &str = "tls.cert (--tls-cert, FERRULE_TLS_CERT)";
    const KEY: &str = "tls.key (--tls-key, FERRULE_TLS_KEY)";
    let unreadable = |setting: &str, path: &Path, e: &dyn fmt::Display| {
        StartupError::new(
            setting,
            format!(
                "{} cannot be read as PEM ({e}): give a readable PEM file",
                path.display()
            ),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(CERT, cert, &e))?;
    if chain.is_empty() {
        return Err(StartupError::new(
            CERT,
            format!(
                "{} holds no CERTIFICATE block: give a PEM certificate",
                cert.display()
            ),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable(KEY, key, &e))?;
    Ok(TlsMaterial {
        chain,
        key: key_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_checks_do_not_create_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("a/b/c");
        check_data_dir(&target).unwrap();
        assert!(!tmp.path().join("a").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = check_data_dir(&file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("is a file"), "{err}");
    }
}

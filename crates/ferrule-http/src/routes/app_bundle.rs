//! Unpacking a custom app's bundle: a zip archive, checked as an attacker
//! would build one.
//!
//! - At most [`MAX_BUNDLE_BYTES`] compressed, [`MAX_UNPACKED_BYTES`]
//!   unpacked and [`MAX_FILES`] entries. The unpacked total is counted
//!   while inflating, never taken from the archive's own (forgeable) sizes,
//!   so a zip bomb stops at the limit.
//! - Paths: UTF-8, relative, `/`-separated, no `.`, `..` or empty
//!   segments, no backslash, no drive letter, no control or invisible
//!   formatting characters, at most 255 bytes; symlinks and encrypted
//!   entries are refused. Names are matched as given (no case folding), and
//!   a name given twice is refused.
//! - `index.html` at the root is required; `ferrule.json` is reserved (the
//!   server answers it with the app's settings).
//!
//! Any refusal refuses the whole bundle: nothing of it is kept.

use std::io::{Cursor, Read};

use ferrule_store::apps::AppFile;

/// The largest bundle accepted, as uploaded.
pub const MAX_BUNDLE_BYTES: usize = 10 * 1024 * 1024;
/// The most its files may hold together, unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 50 * 1024 * 1024;
/// The most entries (files and folders) a bundle may hold.
pub const MAX_FILES: usize = 1000;
/// The longest path of a file.
const MAX_PATH_BYTES: usize = 255;
/// The file served for the app's root.
pub const INDEX: &str = "index.html";
/// Answered by the server with the app's settings and key.
pub const SETTINGS: &str = "ferrule.json";

/// A bundle's files and their total size.
#[derive(Debug)]
pub struct Bundle {
    pub files: Vec<AppFile>,
    pub bytes: u64,
}

/// Checks a path inside an app (from a bundle, or asked for in a URL):
/// `Err` says why it is refused.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an entry has an empty name".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("a path is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\\') {
        return Err(format!("{path:?} contains a backslash: use '/'"));
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} is an absolute path"));
    }
    if path.as_bytes().get(1) == Some(&b':') {
        return Err(format!("{path:?} starts with a drive letter"));
    }
    if let Some(c) = path.chars().find(|c| forbidden_char(*c)) {
        return Err(format!(
            "{path:?} contains the character U+{:04X}",
            c as u32
        ));
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(format!("{path:?} has an empty segment")),
            "." | ".." => return Err(format!("{path:?} leaves its folder ({segment})")),
            _ => {}
        }
    }
    Ok(())
}

/// Control characters, and the invisible ones that make two names look
/// alike or reorder how a name is shown (bidi overrides, zero widths).
fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Unpacks and checks a bundle; `Err` says why it is refused.
pub fn unpack(zip_bytes: &[u8]) -> Result<Bundle, String> {
    if zip_bytes.len() > MAX_BUNDLE_BYTES {
        return Err(format!(
            "the bundle is larger than {MAX_BUNDLE_BYTES} bytes"
        ));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))
        .map_err(|e| format!("the body is not a readable zip archive: {e}"))?;
    if archive.len() > MAX_FILES {
        return Err(format!(
            "the bundle holds {} entries, more than {MAX_FILES}",
            archive.len()
        ));
    }
    let mut files: Vec<AppFile> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("entry {i} cannot be read: {e}"))?;
        let name = std::str::from_utf8(entry.name_raw())
            .map_err(|_| format!("entry {i}'s name is not UTF-8"))?
            .to_owned();
        if entry.is_symlink() {
            return Err(format!("{name:?} is a symbolic link"));
        }
        if entry.encrypted() {
            return Err(format!("{name:?} is encrypted"));
        }
        if entry.is_dir() {
            check_path(name.trim_end_matches('/'))?;
            continue;
        }
        check_path(&name)?;
        if name == SETTINGS {
            return Err(format!(
                "{SETTINGS} is reserved: the server answers it with the app's settings"
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("{name:?} is in the bundle twice"));
        }
        // Inflate at most what is left of the budget, plus one byte to
        // know it was exceeded.
        let left = MAX_UNPACKED_BYTES - total;
        let mut body = Vec::new();
        (&mut entry)
            .take(left + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("{name:?} cannot be unpacked: {e}"))?;
        total += body.len() as u64;
        if total > MAX_UNPACKED_BYTES {
            return Err(format!(
                "the bundle unpacks to more than {MAX_UNPACKED_BYTES} bytes"
            ));
        }
        files.push(AppFile { path: name, body });
    }
    if !seen.contains(INDEX) {
        return Err(format!("the bundle has no {INDEX} at its root"));
    }
    Ok(Bundle {
        files,
        bytes: total,
    })
}

/// The content type of a file, by its extension; unknown ones are served
/// as bytes to download, never as something a browser runs.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn a_good_bundle_unpacks() {
        let b = unpack(&zip_of(&[("index.html", b"<p>hi"), ("js/app.js", b"1")])).unwrap();
        assert_eq!(b.files.len(), 2);
        assert_eq!(b.bytes, 6);
        assert_eq!(b.files[1].path, "js/app.js");
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\b",
            "C:x",
            "./a",
            "a//b",
            "a\u{202E}b",
            "a\nb",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
            assert!(
                unpack(&zip_of(&[("index.html", b"x"), (bad, b"x")])).is_err(),
                "{bad:?}"
            );
        }
        assert!(check_path("img/é.png").is_ok());
    }

    #[test]
    fn missing_index_duplicates_and_reserved_names_are_refused() {
        assert!(
            unpack(&zip_of(&[("app.js", b"x")]))
                .unwrap_err()
                .contains("index.html")
        );
        assert!(unpack(&zip_of(&[("index.html", b"x"), ("ferrule.json", b"{}")])).is_err());
        assert!(unpack(b"not a zip").is_err());
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let big = vec![0u8; (MAX_UNPACKED_BYTES / 2 + 1) as usize];
        let bomb = zip_of(&[("index.html", b"x"), ("a", &big), ("b", &big)]);
        assert!(bomb.len() < MAX_BUNDLE_BYTES);
        assert!(unpack(&bomb).unwrap_err().contains("unpacks to more"));
    }
}

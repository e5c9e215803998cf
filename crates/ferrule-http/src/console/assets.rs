//! The console's static files (our CSS and JS, vendored htmx and uPlot),
//! embedded in the binary and served at content-hashed URLs.
//!
//! A file's URL carries the first 8 bytes (hex) of its SHA-256, so a
//! browser may keep it forever (`immutable`): a new build with a changed
//! file changes the URL, and templates always ask [`url`] for it.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "console/assets/"]
struct Own;

#[derive(RustEmbed)]
#[folder = "console/vendor/"]
struct Vendored;

/// One servable file.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
}

struct Catalogue {
    /// Logical name (`app.js`, `htmx.min.js`) → hashed URL.
    urls: HashMap<String, String>,
    /// Hashed file name (`app.3f2a9c1b.js`) → the file.
    files: HashMap<String, Asset>,
}

const CACHE_FOREVER: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut catalogue = Catalogue {
            urls: HashMap::new(),
            files: HashMap::new(),
        };
        let own = Own::iter().filter_map(|p| Own::get(&p).map(|f| (p, f)));
        let vendored = Vendored::iter().filter_map(|p| Vendored::get(&p).map(|f| (p, f)));
        for (path, file) in own.chain(vendored) {
            // Vendored files sit in a folder per project; their names are
            // unique on their own.
            let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
            let Some(content_type) = content_type(&name) else {
                continue; // licences and notes: in the repository, not served
            };
            let hash = hex::encode(&file.metadata.sha256_hash()[..4]);
            let hashed = match name.rsplit_once('.') {
                Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
                None => format!("{name}.{hash}"),
            };
            let bytes: &'static [u8] = match file.data {
                std::borrow::Cow::Borrowed(b) => b,
                // Only without `debug-embed` would files be read at run
                // time; they live as long as the process either way.
                std::borrow::Cow::Owned(v) => Vec::leak(v),
            };
            catalogue.urls.insert(name, format!("/assets/{hashed}"));
            catalogue.files.insert(
                hashed,
                Asset {
                    bytes,
                    content_type,
                },
            );
        }
        catalogue
    })
}

fn content_type(name: &str) -> Option<&'static str> {
    match name.rsplit_once('.')?.1 {
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "svg" => Some("image/svg+xml"),
        "png" => Some("image/png"),
        "ico" => Some("image/x-icon"),
        _ => None,
    }
}

/// The hashed URL of a console asset by its file name, for templates.
/// An unknown name is a bug in a template: it renders as an empty URL
/// (and the template tests catch it).
pub fn url(name: &str) -> Option<&'static str> {
    catalogue().urls.get(name).map(String::as_str)
}

/// `GET /assets/{file}`: only hashed names are served.
pub async fn serve(Path(file): Path<String>) -> Response {
    match catalogue().files.get(&file) {
        Some(asset) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (header::CACHE_CONTROL, CACHE_FOREVER),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            "no such asset: the page that asked for it is older than this server; reload it",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url_that_serves_it() {
        for name in [
            "app.css",
            "app.js",
            "htmx.min.js",
            "uPlot.iife.min.js",
            "uPlot.min.css",
        ] {
            let url = url(name).unwrap_or_else(|| panic!("{name} is embedded"));
            let file = url.strip_prefix("/assets/").unwrap();
            assert!(catalogue().files.contains_key(file), "{url}");
            assert_ne!(file, name, "the URL carries the hash");
        }
        assert!(url("LICENSE").is_none(), "licences are not served");
    }
}

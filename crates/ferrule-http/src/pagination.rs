//! `?limit=&cursor=` paging shared by every listing.
//!
//! The cursor is opaque to clients: the URL-safe base64 of the last id seen.
//! Any well-formed cursor names a position in the listing's order, so a
//! cursor the server did not issue reads from there rather than failing.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use ferrule_store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// Decodes cursors leniently (any trailing bits), as the pattern documents.
const CURSOR: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Items per page when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most items one page may ask for.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(
                CURSOR
                    .decode(c)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|_| ApiError::invalid("cursor", "not a cursor this server issued"))?,
            ),
        };
        Ok(PageRequest { limit, after })
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to read the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    pub fn from_page<S>(page: Page<S>, f: impl FnMut(S) -> T) -> Self {
        Paged {
            items: page.items.into_iter().map(f).collect(),
            next_cursor: page.next.map(|n| URL_SAFE_NO_PAD.encode(n)),
        }
    }
}

//! Filters of the device list that the store cannot apply (they read
//! state kept in memory), paged over the devices they keep.

use ferrule_core::TenantId;
use ferrule_store::{Device, MetaStore, Page, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;

/// Most devices one filtered page reads from the store: a filter that
/// keeps few of a large tenant's devices answers a short page with a
/// `next_cursor` rather than reading the whole tenant at once.
const MAX_SCANNED: usize = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OnlineFilter {
    /// `true`: only devices with an MQTT connection open now; `false`:
    /// only those without.
    pub online: Option<bool>,
}

/// One page of the tenant's devices that `keep` keeps, in id order. The
/// page is short only at the end of the list, or when [`MAX_SCANNED`]
/// devices were read without filling it; `next` continues after the last
/// device read either way.
pub async fn filtered_page(
    store: &std::sync::Arc<dyn MetaStore>,
    tenant: &TenantId,
    request: PageRequest,
    keep: impl Fn(&Device) -> bool,
) -> ferrule_store::Result<Page<Device>> {
    let limit = request.limit as usize;
    let mut after = request.after;
    let mut items = Vec::new();
    let mut scanned = 0;
    loop {
        let page = store
            .list_devices(
                tenant,
                &PageRequest {
                    limit: request.limit,
                    after: after.take(),
                },
            )
            .await?;
        let more = page.next.is_some();
        let mut rest = page.items.into_iter();
        for device in rest.by_ref() {
            scanned += 1;
            let last = device.id.to_string();
            if keep(&device) {
                items.push(device);
            }
            if items.len() == limit || scanned >= MAX_SCANNED {
                // More may follow unless this was the very last device.
                let at_end = !more && rest.len() == 0;
                return Ok(Page {
                    items,
                    next: (!at_end).then_some(last),
                });
            }
            after = Some(last);
        }
        if !more {
            return Ok(Page { items, next: None });
        }
    }
}

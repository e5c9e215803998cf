//! Applying retention: which devices lose what, through the
//! [`TelemetryStore`] trait so every backend behaves the same.

use std::collections::HashMap;

use ferrule_core::TenantId;

use super::{Deleted, RetentionSettings, TelemetryStore, observe};
use crate::{MetaStore, PageRequest, ProfileStore, StoreError};

const DAY_MS: i64 = 86_400_000;

/// Days a device with `profile` keeps: the tenant's override for the
/// profile, else the profile's own `retention_days` (`profile_days`), else
/// the tenant's default, else the server's; `None` keeps everything.
pub fn days_for(
    settings: &RetentionSettings,
    profile: Option<&str>,
    profile_days: Option<u32>,
    server_default: Option<u32>,
) -> Option<u32> {
    profile
        .and_then(|p| settings.profiles.get(p).copied())
        .or(profile_days)
        .or(settings.default_days)
        .or(server_default)
}

/// The `retention_days` of each of a tenant's device profiles that set it.
async fn profile_days(
    profiles: &dyn ProfileStore,
    tenant: &TenantId,
) -> Result<HashMap<String, u32>, StoreError> {
    let mut out = HashMap::new();
    let mut page = PageRequest {
        limit: 1000,
        after: None,
    };
    loop {
        let got = profiles.list_profiles(tenant, &page).await?;
        out.extend(
            got.items
                .into_iter()
                .filter_map(|p| Some((p.name, p.retention_days?))),
        );
        match got.next {
            Some(next) => page.after = Some(next),
            None => return Ok(out),
        }
    }
}

/// Deletes what has expired for every device of a tenant with data. One
/// device at a time, each a short step of the store's writer, so ingest
/// keeps flowing in between.
pub async fn apply(
    meta: &dyn MetaStore,
    profiles: Option<&dyn ProfileStore>,
    telemetry: &dyn TelemetryStore,
    tenant: &TenantId,
    now_ms: i64,
    server_default: Option<u32>,
) -> Result<Deleted, String> {
    let settings = telemetry
        .retention(tenant)
        .await
        .map_err(|e| e.to_string())?;
    let profile_days = match profiles {
        Some(p) => profile_days(p, tenant).await.map_err(|e| e.to_string())?,
        None => HashMap::new(),
    };
    let mut total = Deleted::default();
    for device in telemetry.devices(tenant).await.map_err(|e| e.to_string())? {
        // A device deleted since keeps the tenant's default.
        let profile = match meta.get_device(tenant, &device).await {
            Ok(d) => Some(d.profile),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.to_string()),
        };
        let own = profile
            .as_deref()
            .and_then(|p| profile_days.get(p).copied());
        let Some(days) = days_for(&settings, profile.as_deref(), own, server_default) else {
            continue;
        };
        let cutoff = now_ms.saturating_sub(i64::from(days) * DAY_MS);
        let d = telemetry
            .delete_before(tenant, &device, cutoff)
            .await
            .map_err(|e| e.to_string())?;
        total.points += d.points;
        total.events += d.events;
    }
    observe::RetentionApplied {
        tenant,
        deleted: total,
    }
    .emit();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_override_beats_the_tenant_default_which_beats_the_server() {
        let mut s = RetentionSettings::default();
        assert_eq!(days_for(&s, Some("x"), None, Some(30)), Some(30));
        assert_eq!(days_for(&s, None, None, None), None);
        s.default_days = Some(7);
        assert_eq!(days_for(&s, Some("x"), None, Some(30)), Some(7));
        // The device profile's own retention beats the tenant default...
        assert_eq!(days_for(&s, Some("x"), Some(3), Some(30)), Some(3));
        s.profiles.insert("x".into(), 2);
        // ...and the tenant's override for the profile beats that.
        assert_eq!(days_for(&s, Some("x"), Some(3), Some(30)), Some(2));
        assert_eq!(days_for(&s, Some("y"), None, Some(30)), Some(7));
    }
}

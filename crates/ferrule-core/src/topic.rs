//! MQTT topic names and filters, and matching between them.
//!
//! Names and filters are `/`-separated levels. In a filter, `+` matches exactly
//! one level and `#` (last, alone in its level) matches the parent and any
//! number of levels below. Per MQTT 5 §4.7.2, a filter starting with a
//! wildcard does not match a topic starting with `$` (`$SYS/…`, `$share` is a
//! filter prefix, not a topic).

/// Longest topic or filter in bytes (MQTT's UTF-8 string limit).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic must not be empty")]
    Empty,
    #[error("topic is longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
    #[error("topic must not contain U+0000")]
    Null,
    #[error("wildcards are not allowed in a topic name")]
    WildcardInName,
    #[error("'#' must be the last level and alone in it")]
    BadMultiLevel,
    #[error("'+' must be alone in its level")]
    BadSingleLevel,
    #[error("shared subscription must be $share/GROUP/FILTER with a non-empty group")]
    BadShare,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::Null);
    }
    Ok(())
}

/// Checks a topic name, as published to.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter, as subscribed to (without any `$share/` prefix).
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::BadMultiLevel);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadSingleLevel);
        }
    }
    Ok(())
}

/// A subscription filter split into its shared-subscription group, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter<'a> {
    pub share_group: Option<&'a str>,
    pub filter: &'a str,
}

/// Parses `$share/GROUP/FILTER` or a plain filter, validating the filter.
pub fn parse_subscription(s: &str) -> Result<SubscriptionFilter<'_>, TopicError> {
    if let Some(rest) = s.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
        if group.is_empty() || group.contains(['+', '#']) {
            return Err(TopicError::BadShare);
        }
        validate_filter(filter)?;
        return Ok(SubscriptionFilter {
            share_group: Some(group),
            filter,
        });
    }
    validate_filter(s)?;
    Ok(SubscriptionFilter {
        share_group: None,
        filter: s,
    })
}

/// Whether `filter` matches topic `name`. Both are assumed valid.
pub fn matches(filter: &str, name: &str) -> bool {
    matches_levels(filter.split('/'), name.split('/'))
}

/// Whether every topic that `inner` matches is also matched by `outer`: used
/// to decide if a subscription stays inside what an ACL pattern allows.
pub fn covers(outer: &str, inner: &str) -> bool {
    covers_levels(outer.split('/'), inner.split('/'))
}

/// Whether some topic name is matched by both filters: used to decide if a
/// subscription could receive anything an ACL pattern denies.
pub fn intersects(a: &str, b: &str) -> bool {
    intersects_levels(a.split('/'), b.split('/'))
}

// The `*_levels` forms take filters already split into levels, so that ACL
// patterns can stand a device id in for `{device_id}` on the fly instead of
// building a new string on every publish.

fn is_wildcard(level: &str) -> bool {
    level == "+" || level == "#"
}

/// A `$` topic (`$SYS/…`) is out of reach of a leading wildcard (§4.7.2).
fn dollar_excluded(filter_first: &str, other_first: &str) -> bool {
    is_wildcard(filter_first) && other_first.starts_with('$')
}

/// [`matches`] over levels.
pub(crate) fn matches_levels<'f, 'n>(
    filter: impl Iterator<Item = &'f str>,
    name: impl Iterator<Item = &'n str>,
) -> bool {
    let (mut f, mut n) = (filter.peekable(), name.peekable());
    if let (Some(f0), Some(n0)) = (f.peek(), n.peek())
        && dollar_excluded(f0, n0)
    {
        return false;
    }
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(nl)) if fl == nl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// [`covers`] over levels.
pub(crate) fn covers_levels<'o, 'i>(
    outer: impl Iterator<Item = &'o str>,
    inner: impl Iterator<Item = &'i str>,
) -> bool {
    let (mut o, mut i) = (outer.peekable(), inner.peekable());
    if let (Some(o0), Some(i0)) = (o.peek(), i.peek())
        && dollar_excluded(o0, i0)
    {
        return false;
    }
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(il)) if il != "#" => {}
            (Some(ol), Some(il)) if ol == il && ol != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// [`intersects`] over levels.
pub(crate) fn intersects_levels<'a, 'b>(
    a: impl Iterator<Item = &'a str>,
    b: impl Iterator<Item = &'b str>,
) -> bool {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    // Two leading wildcards still meet on a topic not starting with `$`; a
    // leading wildcard and a literal `$…` level never do.
    if let (Some(a0), Some(b0)) = (a.peek(), b.peek())
        && (dollar_excluded(a0, b0) || dollar_excluded(b0, a0))
    {
        return false;
    }
    loop {
        match (a.next(), b.next()) {
            // `#` also matches its parent, so whatever is left of the other
            // filter (nothing, or levels that match some name) meets it.
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(al), Some(bl)) if al == bl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn validation() {
        assert!(validate_name("a/b/c").is_ok());
        assert!(validate_name("/").is_ok());
        assert_eq!(validate_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        for ok in ["#", "+", "a/#", "+/+/c", "/+", "a//b", "$SYS/#"] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_filter("a/#/b"), Err(TopicError::BadMultiLevel));
        assert_eq!(validate_filter("a#"), Err(TopicError::BadMultiLevel));
        assert_eq!(validate_filter("a+/b"), Err(TopicError::BadSingleLevel));
        let s = parse_subscription("$share/g1/devices/+/telemetry").unwrap();
        assert_eq!(
            (s.share_group, s.filter),
            (Some("g1"), "devices/+/telemetry")
        );
        assert_eq!(parse_subscription("$share//a"), Err(TopicError::BadShare));
        assert_eq!(parse_subscription("$share/g"), Err(TopicError::BadShare));
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // MQTT 5 §4.7.1.2 and §4.7.1.3.
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        // §4.7.2: wildcards at the start do not match `$` topics.
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    }

    #[test]
    fn coverage() {
        assert!(covers("devices/pump/#", "devices/pump/telemetry"));
        assert!(covers("devices/pump/#", "devices/pump/+/x"));
        assert!(covers("devices/pump/#", "devices/pump/#"));
        assert!(covers("devices/+/telemetry", "devices/pump/telemetry"));
        assert!(!covers("devices/pump/#", "devices/+/telemetry"));
        assert!(!covers("devices/pump/#", "#"));
        assert!(!covers("devices/pump/telemetry", "devices/pump/#"));
        assert!(!covers("#", "$SYS/x"));
    }

    #[test]
    fn intersection() {
        assert!(intersects("devices/#", "devices/secret/#"));
        assert!(intersects("devices/secret/#", "devices/#"));
        assert!(intersects("devices/+/telemetry", "devices/pump/+"));
        assert!(intersects("a/#", "a"), "`#` matches its parent");
        assert!(intersects("+/+", "a/+"));
        assert!(intersects("#", "+"));
        assert!(!intersects("devices/pump/#", "devices/fan/#"));
        assert!(!intersects("a/+", "a"));
        assert!(!intersects("a/b", "a/b/c"));
        // A leading wildcard never meets a `$` topic, but two leading
        // wildcards meet on an ordinary one.
        assert!(!intersects("#", "$SYS/#"));
        assert!(!intersects("$SYS/+", "+/monitor"));
        assert!(intersects("$SYS/#", "$SYS/+"));
        assert!(intersects("+/#", "#"));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof!["[ab]{0,2}", Just("$s".to_owned())]
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|v| v.join("/"))
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        let lvl = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
        (prop::collection::vec(lvl, 1..5), any::<bool>())
            .prop_map(|(mut v, hash)| {
                if hash {
                    v.push("#".to_owned());
                }
                v.join("/")
            })
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    /// A deliberately naive matcher: filter levels → regex.
    fn naive(filter: &str, name: &str) -> bool {
        if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let f: Vec<&str> = filter.split('/').collect();
        let n: Vec<&str> = name.split('/').collect();
        if f.last() == Some(&"#") {
            let prefix = &f[..f.len() - 1];
            return n.len() >= prefix.len()
                && prefix.iter().zip(&n).all(|(a, b)| *a == "+" || a == b);
        }
        f.len() == n.len() && f.iter().zip(&n).all(|(a, b)| *a == "+" || a == b)
    }

    /// Searches for a name both filters match. At each position a shared
    /// name's level is either a literal of one of the filters there or, where
    /// both have wildcards, anything: a fresh level `z` stands for that.
    fn naive_intersects(a: &str, b: &str) -> bool {
        let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
        let longest = fa.len().max(fb.len());
        let choices = |i: usize| -> Vec<&str> {
            let mut c = vec!["z"];
            for f in [&fa, &fb] {
                if let Some(l) = f.get(i).filter(|l| !matches!(**l, "+" | "#")) {
                    c.push(l);
                }
            }
            c
        };
        let mut names: Vec<Vec<&str>> = vec![Vec::new()];
        for i in 0..longest {
            names = names
                .into_iter()
                .flat_map(|n| {
                    choices(i).into_iter().map(move |l| {
                        let mut m = n.clone();
                        m.push(l);
                        m
                    })
                })
                .collect();
            if names
                .iter()
                .any(|n| naive(a, &n.join("/")) && naive(b, &n.join("/")))
            {
                return true;
            }
        }
        false
    }

    proptest! {
        #[test]
        fn matches_agrees_with_naive(f in filter(), n in name()) {
            prop_assert!(validate_filter(&f).is_ok());
            prop_assert!(validate_name(&n).is_ok());
            prop_assert_eq!(matches(&f, &n), naive(&f, &n), "filter {} name {}", f, n);
        }

        #[test]
        fn covers_implies_every_match(outer in filter(), inner in filter(), n in name()) {
            if covers(&outer, &inner) && matches(&inner, &n) {
                prop_assert!(matches(&outer, &n), "{} covers {} but misses {}", outer, inner, n);
            }
        }

        #[test]
        fn a_shared_name_means_the_filters_intersect(a in filter(), b in filter(), n in name()) {
            if matches(&a, &n) && matches(&b, &n) {
                prop_assert!(intersects(&a, &b), "{} and {} both match {}", a, b, n);
            }
        }

        #[test]
        fn intersects_is_symmetric(a in filter(), b in filter()) {
            prop_assert_eq!(intersects(&a, &b), intersects(&b, &a), "{} vs {}", a, b);
        }

        #[test]
        fn intersects_agrees_with_a_search_for_a_witness(a in filter(), b in filter()) {
            prop_assert_eq!(intersects(&a, &b), naive_intersects(&a, &b), "{} vs {}", a, b);
        }

        // Every valid filter matches some name (`+` → any level, `#` → the
        // parent), so coverage always leaves a topic in common.
        #[test]
        fn covers_implies_intersects(outer in filter(), inner in filter()) {
            if covers(&outer, &inner) {
                prop_assert!(intersects(&outer, &inner), "{} covers {}", outer, inner);
            }
        }

        #[test]
        fn a_filter_covers_itself_and_its_names(f in filter(), n in name()) {
            prop_assert!(covers(&f, &f));
            if matches(&f, &n) {
                prop_assert!(covers(&f, &n));
            }
        }
    }
}

//! Tenant ACL rules and the decision the MQTT broker enforces with them.
//!
//! Without rules, a device may publish and subscribe under
//! `devices/{its id}/#` only; users and API keys with a tenant role reach the
//! whole tenant's topic space (viewers: subscribe only); anonymous clients
//! reach it all. A tenant's [`AclRule`]s change that: compiled into a
//! [`Policy`], they are tried highest priority first, deny before allow at
//! equal priority, and the first that applies decides.
//!
//! A rule applies to a principal when its subject covers the principal's kind
//! and its action includes the access. Its topic pattern is a topic filter in
//! which a whole level `{device_id}` stands for the device asking, so a rule
//! with `{device_id}` applies to devices only. For a publish, and for
//! receiving a message, the pattern must match the topic: read access is
//! decided per message, as mosquitto does. A subscription is granted when
//! some topic its filter matches may be received ([`reach`]): one narrow
//! deny does not refuse `#`, and a filter that can match nothing receivable
//! is refused.

mod reach;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::topic::{self, TopicError};
use crate::{Principal, PrincipalKind};

/// The placeholder for the asking device's id in a rule's topic pattern.
pub const DEVICE_ID_PLACEHOLDER: &str = "{device_id}";

/// Longest topic pattern accepted, in characters. Patterns name places in a
/// tenant's topic tree; they need not be as long as a topic may be.
pub const MAX_PATTERN_LEN: usize = 1024;

/// What a rule does when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// Which access a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Publish,
    Subscribe,
    /// Both publish and subscribe.
    All,
}

/// Whom a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclSubject {
    Devices,
    /// Users and API keys.
    Users,
    /// MQTT clients admitted without credentials.
    Anonymous,
    All,
}

/// The access a client asks for: to publish to a topic, to subscribe to a
/// filter, or to receive a message on a topic. Rules about subscribing
/// decide both of the latter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Publish,
    /// Granted when some topic the filter matches may be received.
    Subscribe,
    /// A message on this topic, through a subscription already granted.
    Receive,
}

/// One rule of a tenant's ACL, as the API shows and stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub id: String,
    pub effect: Effect,
    pub action: AclAction,
    /// A topic filter in which a whole level may be `{device_id}`.
    pub topic: String,
    pub subject: AclSubject,
    /// Higher goes first.
    #[serde(default)]
    pub priority: i32,
}

/// Text forms as the API and the store spell them.
macro_rules! words {
    ($ty:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &[$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = AclError;
            fn from_str(s: &str) -> Result<Self, AclError> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| AclError::UnknownWord {
                        what: stringify!($ty),
                        found: s.to_owned(),
                    })
            }
        }
    };
}

words!(Effect { Allow = "allow", Deny = "deny" });
words!(AclAction { Publish = "publish", Subscribe = "subscribe", All = "all" });
words!(AclSubject { Devices = "devices", Users = "users", Anonymous = "anonymous", All = "all" });

/// Why a rule or one of its fields was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("topic pattern must not be empty")]
    Empty,
    #[error("topic pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
    #[error("{{device_id}} must be a whole level, as in devices/{{device_id}}/#")]
    PlaceholderNotALevel,
    #[error("{0:?} is not a placeholder: the only one is {{device_id}}, as a whole level")]
    UnknownPlaceholder(String),
    #[error("not a valid topic filter: {0}")]
    Topic(#[from] TopicError),
    #[error("{found:?} is not a valid {what}")]
    UnknownWord { what: &'static str, found: String },
}

/// Checks a rule's topic pattern: a valid topic filter once `{device_id}` is
/// replaced by a device id, with `{device_id}` only as a whole level.
pub fn validate_pattern(pattern: &str) -> Result<(), AclError> {
    if pattern.is_empty() {
        return Err(AclError::Empty);
    }
    // Characters, not bytes, so that API documents can state the bound.
    if pattern.chars().count() > MAX_PATTERN_LEN {
        return Err(AclError::TooLong);
    }
    for level in pattern.split('/') {
        if level == DEVICE_ID_PLACEHOLDER {
            continue;
        }
        if level.contains(DEVICE_ID_PLACEHOLDER) {
            return Err(AclError::PlaceholderNotALevel);
        }
        // Braces are legal in MQTT topics, but in a pattern they are far more
        // likely a mistyped placeholder that would silently never match.
        if level.contains(['{', '}']) {
            return Err(AclError::UnknownPlaceholder(level.to_owned()));
        }
    }
    // A device id is letters, digits, `-`, `_` and `.`: any one validates
    // alike where the placeholder stands.
    topic::validate_filter(&pattern.replace(DEVICE_ID_PLACEHOLDER, "device"))?;
    Ok(())
}

/// Orders rules as a [`Policy`] tries them: higher priority first, deny before
/// allow at equal priority, then by id so that the order is stable.
pub fn evaluation_order(a: &AclRule, b: &AclRule) -> Ordering {
    let deny_first = |r: &AclRule| r.effect != Effect::Deny;
    b.priority
        .cmp(&a.priority)
        .then_with(|| deny_first(a).cmp(&deny_first(b)))
        .then_with(|| a.id.cmp(&b.id))
}

/// A tenant's rules, compiled for deciding each publish and subscription.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// In [`evaluation_order`].
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    rule: AclRule,
    /// The pattern names `{device_id}`, so the rule is for devices only.
    per_device: bool,
}

impl Policy {
    /// Compiles a tenant's rules. Rules are assumed valid
    /// ([`validate_pattern`]); the API refuses any that are not.
    pub fn new(rules: impl IntoIterator<Item = AclRule>) -> Self {
        let mut rules: Vec<AclRule> = rules.into_iter().collect();
        rules.sort_by(evaluation_order);
        let rules = rules
            .into_iter()
            .map(|rule| CompiledRule {
                per_device: rule.topic.split('/').any(|l| l == DEVICE_ID_PLACEHOLDER),
                rule,
            })
            .collect();
        Self { rules }
    }

    /// The rules in the order they are tried.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &AclRule> {
        self.rules.iter().map(|c| &c.rule)
    }

    /// Whether `who` may publish to or receive from the topic name, or
    /// subscribe to the filter (without any `$share/GROUP/` prefix),
    /// `topic_or_filter`. Both are assumed valid. Publishing and receiving
    /// run on every message: they allocate nothing.
    pub fn allows(&self, who: &Principal, access: Access, topic_or_filter: &str) -> bool {
        if access == Access::Subscribe {
            return self.reaches(who, topic_or_filter);
        }
        let device = device_of(who);
        for c in &self.rules {
            if c.applies_to(who, device, access)
                && topic::matches_levels(
                    pattern_levels(&c.rule.topic, device),
                    topic_or_filter.split('/'),
                )
            {
                return c.rule.effect == Effect::Allow;
            }
        }
        default_allows(who, access, topic_or_filter)
    }

    /// Whether `who` may receive every message of its tenant, whatever its
    /// topic, so that per-message checks can be skipped: users, keys and
    /// anonymous clients to whom no deny rule about subscribing applies.
    pub fn receives_everything(&self, who: &Principal) -> bool {
        let device = device_of(who);
        device.is_none()
            && !self.rules.iter().any(|c| {
                c.rule.effect == Effect::Deny && c.applies_to(who, device, Access::Receive)
            })
    }

    /// Whether some topic the filter matches may be received by `who`.
    fn reaches(&self, who: &Principal, filter: &str) -> bool {
        let device = device_of(who);
        let mut rules: Vec<reach::Rule<'_>> = self
            .rules
            .iter()
            .filter(|c| c.applies_to(who, device, Access::Receive))
            .map(|c| reach::Rule {
                levels: pattern_levels(&c.rule.topic, device).collect(),
                allow: c.rule.effect == Effect::Allow,
            })
            .collect();
        // The defaults, as rules tried last.
        let fallback = match device {
            Some(id) => {
                rules.push(reach::Rule {
                    levels: pattern_levels(DEVICE_SUBTREE, Some(id)).collect(),
                    allow: true,
                });
                false
            }
            None => default_allows(who, Access::Receive, ""),
        };
        reach::reachable(&rules, fallback, filter)
    }
}

fn device_of(who: &Principal) -> Option<&str> {
    match &who.kind {
        PrincipalKind::Device { id } => Some(id.as_str()),
        _ => None,
    }
}

impl CompiledRule {
    fn applies_to(&self, who: &Principal, device: Option<&str>, access: Access) -> bool {
        let subject = matches!(
            (self.rule.subject, &who.kind),
            (AclSubject::All, _)
                | (AclSubject::Devices, PrincipalKind::Device { .. })
                | (
                    AclSubject::Users,
                    PrincipalKind::User { .. } | PrincipalKind::ApiKey { .. }
                )
                | (AclSubject::Anonymous, PrincipalKind::Anonymous)
        );
        let action = matches!(
            (self.rule.action, access),
            (AclAction::All, _)
                | (AclAction::Publish, Access::Publish)
                | (AclAction::Subscribe, Access::Subscribe | Access::Receive)
        );
        subject && action && (device.is_some() || !self.per_device)
    }
}

/// A pattern's levels with the device id standing in for `{device_id}`.
/// Callers skip per-device rules when there is no device, so the placeholder
/// then never reaches matching.
fn pattern_levels<'a>(pattern: &'a str, device: Option<&'a str>) -> impl Iterator<Item = &'a str> {
    pattern.split('/').map(move |l| match device {
        Some(id) if l == DEVICE_ID_PLACEHOLDER => id,
        _ => l,
    })
}

/// Where a device may publish and subscribe when no rule says otherwise.
const DEVICE_SUBTREE: &str = "devices/{device_id}/#";

/// What holds when no rule decides a publish or a receipt (subscriptions
/// are decided by what they may receive).
fn default_allows(who: &Principal, access: Access, topic_or_filter: &str) -> bool {
    match &who.kind {
        PrincipalKind::Device { id } => {
            let own = pattern_levels(DEVICE_SUBTREE, Some(id.as_str()));
            let target = topic_or_filter.split('/');
            topic::matches_levels(own, target)
        }
        // Every tenant role reads; viewers may not write.
        PrincipalKind::User { role, .. } | PrincipalKind::ApiKey { role, .. } => {
            access != Access::Publish || role.can_write()
        }
        PrincipalKind::Anonymous => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, Role, TenantId};
    use proptest::prelude::*;

    fn rule(
        effect: Effect,
        subject: AclSubject,
        action: AclAction,
        topic: &str,
        priority: i32,
    ) -> AclRule {
        AclRule {
            id: format!("acl_{topic}_{priority}_{effect}"),
            effect,
            action,
            topic: topic.to_owned(),
            subject,
            priority,
        }
    }

    fn allow(subject: AclSubject, action: AclAction, topic: &str, priority: i32) -> AclRule {
        rule(Effect::Allow, subject, action, topic, priority)
    }

    fn deny(subject: AclSubject, action: AclAction, topic: &str, priority: i32) -> AclRule {
        rule(Effect::Deny, subject, action, topic, priority)
    }

    fn principal(kind: PrincipalKind) -> Principal {
        Principal {
            tenant: TenantId::default_tenant(),
            kind,
        }
    }

    fn device(id: &str) -> Principal {
        principal(PrincipalKind::Device {
            id: DeviceId::new(id).unwrap(),
        })
    }

    fn user(role: Role) -> Principal {
        principal(PrincipalKind::User {
            id: "u1".into(),
            role,
        })
    }

    fn key(role: Role) -> Principal {
        principal(PrincipalKind::ApiKey {
            id: "k1".into(),
            role,
        })
    }

    fn anonymous() -> Principal {
        principal(PrincipalKind::Anonymous)
    }

    use Access::{Publish, Receive, Subscribe};
    use AclAction as A;
    use AclSubject as S;

    #[test]
    fn without_rules_a_device_stays_in_its_subtree() {
        let p = Policy::default();
        let pump = device("pump");
        assert!(p.allows(&pump, Publish, "devices/pump/telemetry"));
        assert!(p.allows(&pump, Publish, "devices/pump"));
        assert!(p.allows(&pump, Subscribe, "devices/pump/commands/+"));
        assert!(p.allows(&pump, Subscribe, "devices/pump/#"));
        assert!(!p.allows(&pump, Publish, "devices/fan/telemetry"));
        assert!(!p.allows(&pump, Publish, "devices/pump-2/telemetry"));
        assert!(!p.allows(&pump, Publish, "alerts"));
        assert!(p.allows(&pump, Receive, "devices/pump/commands/reboot"));
        assert!(!p.allows(&pump, Receive, "devices/fan/telemetry"));
        assert!(!p.allows(&pump, Receive, "alerts"));
        // A wildcard is granted for what it may bring of the device's own;
        // the rest is filtered message by message.
        assert!(p.allows(&pump, Subscribe, "devices/+/telemetry"));
        assert!(p.allows(&pump, Subscribe, "devices/#"));
        assert!(p.allows(&pump, Subscribe, "#"));
        assert!(p.allows(&pump, Subscribe, "+/+"));
        assert!(!p.allows(&pump, Subscribe, "devices/fan/#"));
        assert!(!p.allows(&pump, Subscribe, "alerts/#"));
        assert!(!p.allows(&pump, Subscribe, "+/fan/#"));
        assert!(
            p.allows(&pump, Subscribe, "+/+/+/x/devices"),
            "devices/pump/…"
        );
    }

    #[test]
    fn without_rules_roles_decide_for_users_and_keys() {
        let p = Policy::default();
        for who in [
            user(Role::Editor),
            user(Role::Owner),
            user(Role::Admin),
            key(Role::Editor),
        ] {
            assert!(p.allows(&who, Publish, "devices/pump/commands/reboot"));
            assert!(p.allows(&who, Subscribe, "#"));
        }
        for viewer in [user(Role::Viewer), key(Role::Viewer)] {
            assert!(p.allows(&viewer, Subscribe, "devices/#"));
            assert!(!p.allows(&viewer, Publish, "devices/pump/commands/reboot"));
        }
        assert!(p.allows(&anonymous(), Publish, "anything/at/all"));
        assert!(p.allows(&anonymous(), Subscribe, "#"));
    }

    #[test]
    fn a_gateway_rule_lets_devices_publish_any_devices_telemetry() {
        let p = Policy::new([allow(S::Devices, A::Publish, "devices/+/telemetry", 0)]);
        let gw = device("gw");
        assert!(p.allows(&gw, Publish, "devices/child-1/telemetry"));
        assert!(
            p.allows(&gw, Publish, "devices/gw/state/reported"),
            "own subtree still"
        );
        assert!(!p.allows(&gw, Publish, "devices/child-1/state/reported"));
        assert!(
            !p.allows(&gw, Subscribe, "devices/child-1/telemetry"),
            "the rule is about publishing"
        );
    }

    #[test]
    fn a_higher_priority_deny_beats_an_allow() {
        let p = Policy::new([
            allow(S::All, A::All, "devices/#", 1),
            deny(S::All, A::Publish, "devices/+/commands/#", 5),
        ]);
        let editor = user(Role::Editor);
        assert!(!p.allows(&editor, Publish, "devices/pump/commands/reboot"));
        assert!(p.allows(&editor, Publish, "devices/pump/telemetry"));
        // And a higher priority allow beats a deny.
        let p = Policy::new([
            deny(S::Users, A::Subscribe, "devices/#", 1),
            allow(S::Users, A::Subscribe, "devices/pump/#", 2),
        ]);
        assert!(p.allows(&editor, Subscribe, "devices/pump/telemetry"));
        assert!(!p.allows(&editor, Subscribe, "devices/fan/telemetry"));
    }

    #[test]
    fn deny_wins_a_tie() {
        let rules = [
            allow(S::All, A::All, "alerts/#", 3),
            deny(S::All, A::All, "alerts/#", 3),
        ];
        for order in [rules.to_vec(), rules.iter().rev().cloned().collect()] {
            let p = Policy::new(order);
            assert!(!p.allows(&anonymous(), Publish, "alerts/fire"));
            assert_eq!(p.rules().next().unwrap().effect, Effect::Deny);
        }
    }

    #[test]
    fn a_narrow_deny_refuses_only_subscriptions_wholly_inside_it() {
        let p = Policy::new([deny(S::Users, A::Subscribe, "test/nosubscribe", 0)]);
        let owner = user(Role::Owner);
        for granted in ["#", "+/+", "test/+", "test/#", "test/nosubscribe/#"] {
            assert!(p.allows(&owner, Subscribe, granted), "{granted}");
        }
        assert!(!p.allows(&owner, Subscribe, "test/nosubscribe"));
        assert!(!p.allows(&owner, Receive, "test/nosubscribe"));
        assert!(p.allows(&owner, Receive, "test/other"));
        assert!(!p.receives_everything(&owner));
        assert!(!p.receives_everything(&key(Role::Viewer)));
        assert!(p.receives_everything(&anonymous()));
        // A deny of everything but one topic leaves that one.
        let p = Policy::new([
            deny(S::Users, A::Subscribe, "#", 0),
            allow(S::Users, A::Subscribe, "devices/+/alarm", 1),
        ]);
        assert!(p.allows(&owner, Subscribe, "#"));
        assert!(p.allows(&owner, Subscribe, "devices/#"));
        assert!(p.allows(&owner, Subscribe, "+/pump/+"));
        assert!(!p.allows(&owner, Subscribe, "devices/pump/telemetry"));
        assert!(!p.allows(&owner, Subscribe, "+/+/+/+"));
        assert!(
            p.allows(&owner, Subscribe, "$SYS/#"),
            "`#` in a rule does not reach `$` topics"
        );
    }

    #[test]
    fn an_allow_grants_the_subscriptions_that_reach_it() {
        let p = Policy::new([allow(S::Devices, A::Subscribe, "broadcast/+", 0)]);
        let pump = device("pump");
        assert!(p.allows(&pump, Subscribe, "broadcast/firmware"));
        assert!(p.allows(&pump, Subscribe, "broadcast/+"));
        assert!(p.allows(&pump, Subscribe, "broadcast/#"));
        assert!(p.allows(&pump, Receive, "broadcast/firmware"));
        assert!(!p.allows(&pump, Receive, "broadcast/firmware/v2"));
        assert!(!p.allows(&pump, Subscribe, "broadcast/+/+"));
        assert!(!p.receives_everything(&pump), "devices are always checked");
    }

    #[test]
    fn device_id_stands_for_the_asking_device() {
        let p = Policy::new([
            allow(S::Devices, A::Subscribe, "fleet/{device_id}/config", 0),
            deny(S::All, A::Publish, "devices/{device_id}/events/#", 0),
        ]);
        let pump = device("pump");
        assert!(p.allows(&pump, Subscribe, "fleet/pump/config"));
        assert!(!p.allows(&pump, Subscribe, "fleet/fan/config"));
        assert!(p.allows(&pump, Subscribe, "fleet/+/config"));
        assert!(!p.allows(&pump, Receive, "fleet/fan/config"));
        assert!(!p.allows(&pump, Publish, "devices/pump/events/boot"));
        assert!(p.allows(&pump, Publish, "devices/pump/telemetry"));
        // Rules naming {device_id} never apply to anyone else, even for
        // subject `all`; nor does the placeholder match itself literally.
        let editor = user(Role::Editor);
        assert!(p.allows(&editor, Publish, "devices/pump/events/boot"));
        assert!(p.allows(&editor, Publish, "devices/{device_id}/events/boot"));
        assert!(p.allows(&anonymous(), Publish, "devices/{device_id}/events/boot"));
    }

    #[test]
    fn subjects_and_actions_pick_whom_and_what_a_rule_is_about() {
        let p = Policy::new([
            deny(S::Anonymous, A::All, "#", 0),
            deny(S::Users, A::Publish, "devices/+/commands/#", 0),
        ]);
        assert!(!p.allows(&anonymous(), Subscribe, "devices/pump/telemetry"));
        assert!(!p.allows(&anonymous(), Publish, "a"));
        let editor = user(Role::Editor);
        assert!(!p.allows(&editor, Publish, "devices/pump/commands/reboot"));
        assert!(!p.allows(&key(Role::Owner), Publish, "devices/pump/commands/reboot"));
        assert!(p.allows(&editor, Subscribe, "devices/pump/commands/reboot"));
        assert!(p.allows(
            &device("pump"),
            Publish,
            "devices/pump/commands/reboot/response"
        ));
        // An allow can grant a viewer what its role alone does not.
        let p = Policy::new([allow(S::Users, A::Publish, "notes/#", 0)]);
        assert!(p.allows(&user(Role::Viewer), Publish, "notes/today"));
        assert!(!p.allows(&user(Role::Viewer), Publish, "devices/pump/commands/x"));
    }

    #[test]
    fn dollar_topics_are_out_of_reach_of_leading_wildcards() {
        let p = Policy::new([deny(S::All, A::All, "#", 0)]);
        let editor = user(Role::Editor);
        assert!(!p.allows(&editor, Publish, "devices/pump/telemetry"));
        assert!(
            p.allows(&editor, Subscribe, "$SYS/broker/load"),
            "`#` does not reach `$SYS`"
        );
    }

    #[test]
    fn patterns_are_filters_with_whole_level_placeholders() {
        for ok in [
            "#",
            "devices/{device_id}/#",
            "{device_id}",
            "fleet/+/{device_id}/x/{device_id}",
            "$SYS/#",
        ] {
            assert_eq!(validate_pattern(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_pattern(""), Err(AclError::Empty));
        assert_eq!(
            validate_pattern(&"a/".repeat(MAX_PATTERN_LEN / 2 + 1)),
            Err(AclError::TooLong)
        );
        assert_eq!(
            validate_pattern("devices/x{device_id}/#"),
            Err(AclError::PlaceholderNotALevel)
        );
        assert_eq!(
            validate_pattern("devices/{device}/#"),
            Err(AclError::UnknownPlaceholder("{device}".into()))
        );
        assert_eq!(
            validate_pattern("devices/#/x"),
            Err(AclError::Topic(TopicError::BadMultiLevel))
        );
        assert_eq!(
            validate_pattern("devices/a+"),
            Err(AclError::Topic(TopicError::BadSingleLevel))
        );
        assert_eq!(
            validate_pattern("a\0"),
            Err(AclError::Topic(TopicError::Null))
        );
    }

    #[test]
    fn words_and_json_use_the_api_spelling() {
        let r: AclRule = serde_json::from_value(serde_json::json!({
            "id": "acl_1", "effect": "deny", "action": "subscribe",
            "topic": "devices/#", "subject": "anonymous"
        }))
        .unwrap();
        assert_eq!(
            (r.effect, r.action, r.subject, r.priority),
            (Effect::Deny, A::Subscribe, S::Anonymous, 0)
        );
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<AclSubject>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for a in A::ALL {
            assert_eq!(a.as_str().parse::<AclAction>(), Ok(*a));
        }
        assert!("maybe".parse::<Effect>().is_err());
    }

    // Property tests over a small vocabulary, so rules, topics and the
    // device's own subtree meet often.

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("devices".to_owned()),
            Just("d1".to_owned()),
            Just("d2".to_owned()),
            Just("x".to_owned()),
            Just(String::new()),
            Just("$s".to_owned()),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|v| v.join("/"))
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn filter_with(lvl: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        filter_of_levels(lvl, 1..5)
    }

    /// A filter of `levels` levels drawn from `lvl`, perhaps ending in `#`.
    fn filter_of_levels(
        lvl: BoxedStrategy<String>,
        levels: std::ops::Range<usize>,
    ) -> impl Strategy<Value = String> {
        (prop::collection::vec(lvl, levels), any::<bool>())
            .prop_map(|(mut v, hash)| {
                if hash {
                    v.push("#".to_owned());
                }
                v.join("/")
            })
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        filter_with(prop_oneof![3 => level(), 1 => Just("+".to_owned())].boxed())
    }

    fn pattern() -> impl Strategy<Value = String> {
        filter_with(
            // Wildcards weigh more than in filters, so that rules often
            // meet the topic asked about, and each other.
            prop_oneof![
                2 => level(),
                2 => Just("+".to_owned()),
                1 => Just(DEVICE_ID_PLACEHOLDER.to_owned()),
            ]
            .boxed(),
        )
    }

    /// Rules of every effect, action, subject and priority on topics from
    /// `topic`.
    fn rule_on(topic: impl Strategy<Value = String>) -> impl Strategy<Value = AclRule> {
        (
            prop::sample::select(vec![Effect::Allow, Effect::Deny]),
            prop::sample::select(A::ALL.to_vec()),
            topic,
            prop::sample::select(S::ALL.to_vec()),
            0..2i32,
            any::<u16>(),
        )
            .prop_map(|(effect, action, topic, subject, priority, n)| AclRule {
                id: format!("acl_{n:04x}"),
                effect,
                action,
                topic,
                subject,
                priority,
            })
    }

    fn any_rule() -> impl Strategy<Value = AclRule> {
        rule_on(pattern())
    }

    fn any_principal() -> impl Strategy<Value = Principal> {
        prop_oneof![
            Just(device("d1")),
            Just(device("d2")),
            prop::sample::select(Role::ALL.to_vec()).prop_map(user),
            prop::sample::select(Role::ALL.to_vec()).prop_map(key),
            Just(anonymous()),
        ]
    }

    fn any_access() -> impl Strategy<Value = Access> {
        prop::sample::select(vec![Publish, Subscribe, Receive])
    }

    /// The accesses decided for a topic name, message by message.
    fn per_message_access() -> impl Strategy<Value = Access> {
        prop::sample::select(vec![Publish, Receive])
    }

    /// Every topic name of 1 to `max` levels over the vocabulary of
    /// [`level`], plus a level no rule names.
    fn every_name(max: usize) -> Vec<String> {
        let vocabulary = ["devices", "d1", "d2", "x", "", "$s", "fresh"];
        let mut out: Vec<String> = Vec::new();
        let mut last: Vec<String> = vec![String::new()];
        for depth in 0..max {
            last = last
                .iter()
                .flat_map(|prefix| {
                    vocabulary.iter().map(move |l| {
                        if depth == 0 {
                            (*l).to_owned()
                        } else {
                            format!("{prefix}/{l}")
                        }
                    })
                })
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    /// Filters and patterns of up to 3 levels (and a `#`): every topic that
    /// tells them apart has at most 4 levels, so [`every_name`]`(4)` decides.
    fn short_filter_with(lvl: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        filter_of_levels(lvl, 1..4)
    }

    fn short_rule() -> impl Strategy<Value = AclRule> {
        rule_on(short_filter_with(
            prop_oneof![
                2 => level(),
                2 => Just("+".to_owned()),
                1 => Just(DEVICE_ID_PLACEHOLDER.to_owned()),
            ]
            .boxed(),
        ))
    }

    /// The semantics of a publish or a receipt restated plainly: substitute
    /// strings, then among the rules matching the topic the highest priority
    /// decides, deny winning a tie.
    fn naive(rules: &[AclRule], who: &Principal, access: Access, target: &str) -> bool {
        let device = match &who.kind {
            PrincipalKind::Device { id } => Some(id.as_str()),
            _ => None,
        };
        let relevant = rules.iter().filter(|r| {
            let subject_ok = match r.subject {
                S::All => true,
                S::Devices => device.is_some(),
                S::Users => who.role().is_some(),
                S::Anonymous => who.kind == PrincipalKind::Anonymous,
            };
            let action_ok = match access {
                Publish => r.action != A::Subscribe,
                Subscribe | Receive => r.action != A::Publish,
            };
            let pattern = match device {
                Some(id) => r.topic.replace(DEVICE_ID_PLACEHOLDER, id),
                None if r.topic.contains(DEVICE_ID_PLACEHOLDER) => return false,
                None => r.topic.clone(),
            };
            subject_ok && action_ok && topic::matches(&pattern, target)
        });
        let top = relevant.fold(None::<(i32, bool)>, |best, r| {
            let denies = r.effect == Effect::Deny;
            match best {
                Some((p, d)) if p > r.priority || (p == r.priority && d) => Some((p, d)),
                _ => Some((r.priority, denies)),
            }
        });
        match top {
            Some((_, denies)) => !denies,
            None => match (&who.kind, device) {
                (_, Some(id)) => topic::matches(&format!("devices/{id}/#"), target),
                (PrincipalKind::Anonymous, _) => true,
                _ => access != Publish || who.role().is_some_and(|r| r != Role::Viewer),
            },
        }
    }

    proptest! {
        // Cases are cheap; rules that meet each other at equal priority are not
        // frequent, and they are where a policy goes wrong.
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn without_rules_a_device_gets_exactly_its_subtree(n in name(), f in filter()) {
            let p = Policy::default();
            let d1 = device("d1");
            let under = |t: &str| t == "devices/d1" || t.starts_with("devices/d1/");
            prop_assert_eq!(p.allows(&d1, Publish, &n), under(&n), "publish {}", n);
            prop_assert_eq!(p.allows(&d1, Receive, &n), under(&n), "receive {}", n);
            prop_assert_eq!(
                p.allows(&d1, Subscribe, &f),
                topic::intersects(&f, "devices/d1/#"),
                "subscribe {}", f
            );
        }

        #[test]
        fn policy_agrees_with_the_plain_semantics(
            rules in prop::collection::vec(any_rule(), 0..8),
            who in any_principal(),
            access in per_message_access(),
            n in name(),
        ) {
            let p = Policy::new(rules.clone());
            let target = n;
            prop_assert_eq!(
                p.allows(&who, access, &target),
                naive(&rules, &who, access, &target),
                "{:?} {:?} {} under {:?}", who.kind, access, target, rules
            );
        }

        #[test]
        fn allow_rules_only_add_and_deny_rules_only_take_away(
            rules in prop::collection::vec(any_rule(), 0..6),
            who in any_principal(),
            access in any_access(),
            n in name(),
            f in filter(),
        ) {
            let target = match access { Subscribe => f, _ => n };
            let default = Policy::default().allows(&who, access, &target);
            let (allows, denies): (Vec<_>, Vec<_>) =
                rules.into_iter().partition(|r| r.effect == Effect::Allow);
            prop_assert!(Policy::new(allows).allows(&who, access, &target) >= default);
            prop_assert!(Policy::new(denies).allows(&who, access, &target) <= default);
        }

        #[test]
        fn subscriptions_agree_with_an_enumeration_of_topics(
            rules in prop::collection::vec(short_rule(), 0..6),
            who in any_principal(),
            f in short_filter_with(
                prop_oneof![3 => level(), 1 => Just("+".to_owned())].boxed()
            ),
        ) {
            let p = Policy::new(rules.clone());
            let witness = every_name(4)
                .into_iter()
                .find(|n| topic::matches(&f, n) && p.allows(&who, Receive, n));
            prop_assert_eq!(
                p.allows(&who, Subscribe, &f),
                witness.is_some(),
                "{:?} subscribing {} under {:?}: receivable {:?}", who.kind, f, rules, witness
            );
        }

        #[test]
        fn every_generated_pattern_validates(p in pattern()) {
            prop_assert_eq!(validate_pattern(&p), Ok(()));
        }
    }
}

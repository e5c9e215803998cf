//! The subscription tree of one tenant.
//!
//! One node per topic level; `+` and `#` are children named by the wildcard,
//! so matching a topic name visits at most the literal, `+` and `#` child at
//! each level. Shared subscriptions (`$share/GROUP/filter`) live at the node
//! of their filter as groups that take turns.

// hashbrown's default hasher (foldhash) is several times faster than
// SipHash for the short level strings looked up on every publish.
use hashbrown::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrule_core::topic::parse_subscription;
use ferrule_core::{Message, Origin, QoS};
use smallvec::SmallVec;

use crate::Subscriber;

/// Identifies a subscriber (a session) across its subscriptions.
pub type SubscriberId = u64;

/// What a subscription asked for (MQTT 5 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_id: Option<u32>,
}

impl SubscriptionOptions {
    pub fn qos(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            subscription_id: None,
        }
    }
}

/// How one subscriber matched a message, merged over all its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matched {
    pub qos: QoS,
    pub retain_as_published: bool,
    pub subscription_ids: SmallVec<[u32; 2]>,
}

/// One subscription of one subscriber.
#[derive(Clone)]
pub struct Entry {
    pub id: SubscriberId,
    pub subscriber: Arc<dyn Subscriber>,
    pub options: SubscriptionOptions,
}

impl Entry {
    fn accepts(&self, message: &Message) -> bool {
        // "No local": the subscriber's own session published it.
        !(self.options.no_local
            && matches!(message.origin, Origin::Mqtt { session, .. } if session == self.id))
    }
}

struct SharedGroup {
    name: Box<str>,
    members: Vec<Entry>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    entries: Vec<Entry>,
    shared: Vec<SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.entries.is_empty() && self.shared.is_empty()
    }
}

/// Every subscription of one tenant.
#[derive(Default)]
pub struct SubscriptionTree {
    root: Node,
    count: usize,
}

impl SubscriptionTree {
    /// Adds or replaces the subscriber's subscription to `filter` (which may
    /// be `$share/GROUP/…`). Returns true when it is new. The filter must be valid.
    pub fn insert(&mut self, filter: &str, entry: Entry) -> bool {
        let Ok(parsed) = parse_subscription(filter) else {
            return false;
        };
        let mut node = &mut self.root;
        for level in parsed.filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let list = match parsed.share_group {
            None => &mut node.entries,
            Some(group) => {
                let idx = match node.shared.iter().position(|g| &*g.name == group) {
                    Some(i) => i,
                    None => {
                        node.shared.push(SharedGroup {
                            name: group.into(),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        node.shared.len() - 1
                    }
                };
                &mut node.shared[idx].members
            }
        };
        match list.iter_mut().find(|e| e.id == entry.id) {
            Some(existing) => {
                *existing = entry;
                false
            }
            None => {
                list.push(entry);
                self.count += 1;
                true
            }
        }
    }

    /// Removes the subscriber's subscription to `filter`; true if it existed.
    pub fn remove(&mut self, filter: &str, id: SubscriberId) -> bool {
        let Ok(parsed) = parse_subscription(filter) else {
            return false;
        };
        let levels: Vec<&str> = parsed.filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, parsed.share_group, id);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// How many subscriptions the tree holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Calls `f` once per subscriber whose subscriptions match `message`,
    /// with their merged options. Returns how many were called.
    pub fn for_each_match(&self, message: &Message, mut f: impl FnMut(&Entry, &Matched)) -> usize {
        let topic: &str = &message.topic;
        let mut hits: SmallVec<[(&Entry, SubscriptionOptions); 16]> = SmallVec::new();
        let dollar = topic.starts_with('$');
        collect(
            &self.root,
            topic.split('/'),
            true,
            dollar,
            message,
            &mut hits,
        );
        if hits.is_empty() {
            return 0;
        }
        // A subscriber with overlapping subscriptions gets one copy, at the
        // highest QoS granted, with every subscription id (MQTT 5 §3.3.4).
        hits.sort_unstable_by_key(|(e, _)| e.id);
        let mut called = 0;
        let mut i = 0;
        while i < hits.len() {
            let entry = hits[i].0;
            let mut matched = Matched::default();
            while i < hits.len() && hits[i].0.id == entry.id {
                let o = hits[i].1;
                matched.qos = matched.qos.max(o.qos);
                matched.retain_as_published |= o.retain_as_published;
                if let Some(sid) = o.subscription_id {
                    matched.subscription_ids.push(sid);
                }
                i += 1;
            }
            matched.subscription_ids.sort_unstable();
            f(entry, &matched);
            called += 1;
        }
        called
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, id: SubscriberId) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group {
            None => {
                let before = node.entries.len();
                node.entries.retain(|e| e.id != id);
                node.entries.len() != before
            }
            Some(g) => {
                let Some(pos) = node.shared.iter().position(|s| &*s.name == g) else {
                    return false;
                };
                let members = &mut node.shared[pos].members;
                let before = members.len();
                members.retain(|e| e.id != id);
                let removed = members.len() != before;
                if members.is_empty() {
                    node.shared.swap_remove(pos);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, group, id);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn push_matches<'a>(
    node: &'a Node,
    message: &Message,
    hits: &mut SmallVec<[(&'a Entry, SubscriptionOptions); 16]>,
) {
    for e in &node.entries {
        if e.accepts(message) {
            hits.push((e, e.options));
        }
    }
    for group in &node.shared {
        // Take turns; a member that refuses (no local) passes its turn on.
        let n = group.members.len();
        let start = group.next.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = (0..n)
            .map(|k| &group.members[(start + k) % n])
            .find(|e| e.accepts(message))
        {
            hits.push((e, e.options));
        }
    }
}

fn collect<'a, 't>(
    node: &'a Node,
    mut levels: impl Iterator<Item = &'t str> + Clone,
    at_root: bool,
    dollar: bool,
    message: &Message,
    hits: &mut SmallVec<[(&'a Entry, SubscriptionOptions); 16]>,
) {
    // Wildcards at the first level never match `$` topics (MQTT 5 §4.7.2).
    let wildcards = !(at_root && dollar);
    if wildcards && let Some(hash) = node.children.get("#") {
        push_matches(hash, message, hits);
    }
    let Some(level) = levels.next() else {
        push_matches(node, message, hits);
        return;
    };
    if let Some(child) = node.children.get(level) {
        collect(child, levels.clone(), false, dollar, message, hits);
    }
    if wildcards && let Some(plus) = node.children.get("+") {
        collect(plus, levels, false, dollar, message, hits);
    }
}

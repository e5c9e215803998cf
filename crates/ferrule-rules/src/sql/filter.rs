//! A rule's FROM topic filters, split into levels once so that matching a
//! topic on the hot path compares slices and allocates nothing.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(Box<str>),
    /// `+`
    One,
    /// `#`
    Rest,
}

/// One MQTT topic filter, checked and split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    levels: Box<[Level]>,
}

impl Filter {
    /// `filter` must be valid (`ferrule_core::topic::validate_filter`).
    pub fn new(filter: &str) -> Self {
        let levels = filter
            .split('/')
            .map(|l| match l {
                "+" => Level::One,
                "#" => Level::Rest,
                _ => Level::Exact(l.into()),
            })
            .collect();
        Filter { levels }
    }

    /// MQTT matching, including §4.7.2: a filter starting with a wildcard
    /// does not match a `$` topic.
    pub fn matches(&self, topic: &str) -> bool {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Exact(_))) {
            return false;
        }
        let mut names = topic.split('/');
        for level in self.levels.iter() {
            match (level, names.next()) {
                (Level::Rest, _) => return true,
                (Level::One, Some(_)) => {}
                (Level::Exact(want), Some(name)) if **want == *name => {}
                _ => return false,
            }
        }
        names.next().is_none()
    }
}

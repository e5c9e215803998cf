//! Whether a subscription can receive anything: is there a topic name the
//! filter matches that the rules, tried in order, let the client receive?
//!
//! Read access is decided per message (see [`super::Policy`]), so a
//! subscription is worth granting exactly when some topic it matches may be
//! received. Topic names are unbounded, but rules only tell apart the
//! literal levels they name: at each level it is enough to try every literal
//! a still-matching rule names there, plus one "fresh" level no rule names.
//! A depth-first search over those choices, tracking which rules still match,
//! finds a receivable topic if there is one. Beyond the longest pattern no
//! rule changes its mind, so the search is finite; states already explored
//! are remembered, and a budget bounds the work on adversarial rule sets
//! (when it runs out the subscription is granted: every message is still
//! checked on its way out, so that errs only towards a useless subscription).

use std::collections::HashSet;

/// Search steps at most, per question.
const BUDGET: usize = 20_000;

/// One rule as the search sees it: its pattern's levels (the asking
/// device's id already in place of `{device_id}`) and whether it allows.
pub(super) struct Rule<'a> {
    pub levels: Vec<&'a str>,
    pub allow: bool,
}

/// How far a pattern (or the filter) has come along the topic being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    /// Cannot match the topic any more.
    Dead,
    /// Matched every level so far, one pattern level per topic level.
    Alive,
    /// Reached a `#`: matches the topic however it goes on.
    Hashed,
}

/// Whether some topic name matched by `filter` (valid, without `$share/`)
/// is allowed by the first rule of `rules` that matches it, or by
/// `fallback` when none does.
pub(super) fn reachable(rules: &[Rule<'_>], fallback: bool, filter: &str) -> bool {
    let filter: Vec<&str> = filter.split('/').collect();
    let mut search = Search {
        rules,
        fallback,
        filter: &filter,
        explored: HashSet::new(),
        steps: 0,
    };
    // The filter's state rides after the rules'.
    search.from(0, vec![State::Alive; rules.len() + 1])
}

struct Search<'r, 'a> {
    rules: &'r [Rule<'a>],
    fallback: bool,
    filter: &'r [&'r str],
    /// (depth, states) already searched without success.
    explored: HashSet<(usize, Vec<State>)>,
    steps: usize,
}

impl Search<'_, '_> {
    /// Whether a receivable topic extends the `depth` levels chosen so far,
    /// after which rules and filter are in `states`.
    fn from(&mut self, depth: usize, states: Vec<State>) -> bool {
        self.steps += 1;
        if self.steps > BUDGET {
            return true;
        }
        let f = states[self.rules.len()];
        // The topic may end here.
        if depth > 0 && ends_here(self.filter, f, depth) && self.decide_at_end(&states, depth) {
            return true;
        }
        let extendable = f == State::Hashed || (f == State::Alive && self.filter.len() > depth);
        if !extendable {
            return false;
        }
        // When the first rule still in play matches whatever follows, it
        // decides every longer topic; with none in play, the fallback does.
        let first = self
            .rules
            .iter()
            .zip(&states)
            .find(|(_, s)| **s != State::Dead);
        match first {
            None => return self.fallback,
            Some((rule, State::Hashed)) => return rule.allow,
            Some(_) => {}
        }
        if !self.explored.insert((depth, states.clone())) {
            return false;
        }
        // The next level's candidates.
        let wanted = match f {
            State::Alive => self.filter[depth],
            _ => "#",
        };
        if wanted != "+" && wanted != "#" {
            let next = self.advance(&states, depth, Some(wanted));
            return self.from(depth + 1, next);
        }
        // A leading wildcard never matches a `$` level (MQTT §4.7.2).
        let mut literals: Vec<&str> = self
            .rules
            .iter()
            .zip(&states)
            .filter(|(_, s)| **s == State::Alive)
            .filter_map(|(r, _)| r.levels.get(depth).copied())
            .filter(|l| *l != "+" && *l != "#" && !(depth == 0 && l.starts_with('$')))
            .collect();
        literals.sort_unstable();
        literals.dedup();
        for level in literals.into_iter().map(Some).chain([None]) {
            let next = self.advance(&states, depth, level);
            if self.from(depth + 1, next) {
                return true;
            }
        }
        false
    }

    /// The states once the topic's level `depth` is `level` (`None`: a
    /// level no rule names, not starting with `$`).
    fn advance(&self, states: &[State], depth: usize, level: Option<&str>) -> Vec<State> {
        let dollar = depth == 0 && level.is_some_and(|l| l.starts_with('$'));
        let patterns = self
            .rules
            .iter()
            .map(|r| r.levels.as_slice())
            .chain([self.filter]);
        patterns
            .zip(states)
            .map(|(levels, state)| match state {
                State::Alive => match levels.get(depth) {
                    None => State::Dead,
                    Some(&"#") if !dollar => State::Hashed,
                    Some(&"+") if !dollar => State::Alive,
                    Some(l) if Some(*l) == level => State::Alive,
                    Some(_) => State::Dead,
                },
                other => *other,
            })
            .collect()
    }

    /// Whether the topic ending after `depth` levels may be received.
    fn decide_at_end(&self, states: &[State], depth: usize) -> bool {
        self.rules
            .iter()
            .zip(states)
            .find(|(r, s)| ends_here(&r.levels, **s, depth))
            .map_or(self.fallback, |(r, _)| r.allow)
    }
}

/// Whether a pattern in `state` after `depth` levels matches a topic of
/// exactly that many levels (`a/#` matches `a`).
fn ends_here(levels: &[&str], state: State, depth: usize) -> bool {
    match state {
        State::Dead => false,
        State::Hashed => true,
        State::Alive => {
            levels.len() == depth || (levels.len() == depth + 1 && levels[depth] == "#")
        }
    }
}

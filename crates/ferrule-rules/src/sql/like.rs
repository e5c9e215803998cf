//! `LIKE` patterns: `%` matches any run of characters, `_` exactly one, an
//! optional escape character makes the next one literal.
//!
//! Matching is the greedy algorithm that remembers only the last `%`: a
//! mismatch resumes just after it, one character further in the text. That
//! is O(pattern × text) at worst, never exponential, whatever the pattern.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// A compiled `LIKE` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LikePattern {
    pieces: Vec<Piece>,
}

impl LikePattern {
    /// Compiles `pattern`; `Err` when it ends with a lone escape character.
    pub fn new(pattern: &str, escape: Option<char>) -> Result<Self, String> {
        let mut pieces = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let piece = if Some(c) == escape {
                match chars.next() {
                    Some(next) => Piece::Char(next),
                    None => return Err("LIKE pattern ends with its escape character".into()),
                }
            } else if c == '%' {
                // `%%` is `%`: fewer restart points.
                if pieces.last() == Some(&Piece::Any) {
                    continue;
                }
                Piece::Any
            } else if c == '_' {
                Piece::One
            } else {
                Piece::Char(c)
            };
            pieces.push(piece);
        }
        Ok(LikePattern { pieces })
    }

    pub fn matches(&self, text: &str) -> bool {
        let pieces = &self.pieces;
        let (mut p, mut t) = (0usize, 0usize);
        // After the last `%` seen: the piece after it, and where in the
        // text that piece is being tried.
        let mut restart: Option<(usize, usize)> = None;
        loop {
            let Some(c) = text[t..].chars().next() else {
                // Text used up: only trailing `%` may remain.
                return pieces[p..].iter().all(|piece| *piece == Piece::Any);
            };
            match pieces.get(p) {
                Some(Piece::Any) => {
                    p += 1;
                    restart = Some((p, t));
                    continue;
                }
                Some(Piece::One) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                Some(Piece::Char(expected)) if *expected == c => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            let Some((after_any, tried_at)) = restart else {
                return false;
            };
            // Let the `%` swallow one more character and try again.
            let skipped = text[tried_at..].chars().next().map_or(1, char::len_utf8);
            p = after_any;
            t = tried_at + skipped;
            restart = Some((after_any, t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(text: &str, pattern: &str) -> bool {
        LikePattern::new(pattern, None).unwrap().matches(text)
    }

    #[test]
    fn percent_matches_any_run_including_none() {
        assert!(like("sensor-12", "sensor%"));
        assert!(like("sensor", "sensor%"));
        assert!(like("abc", "%"));
        assert!(like("", "%"));
        assert!(like("xxabcxxabd", "%ab_"));
        assert!(like("a/b/c", "a%c"));
        assert!(!like("a/b/c", "a%d"));
        assert!(!like("", "_"));
    }

    #[test]
    fn underscore_matches_exactly_one_char() {
        assert!(like("ab", "a_"));
        assert!(!like("a", "a_"));
        assert!(!like("abc", "a_"));
        // One character, not one byte.
        assert!(like("né", "n_"));
        assert!(like("日本", "__"));
    }

    #[test]
    fn literal_pattern_is_exact() {
        assert!(like("abc", "abc"));
        assert!(!like("abcd", "abc"));
        assert!(!like("ABC", "abc"));
    }

    #[test]
    fn escape_makes_wildcards_literal() {
        let p = LikePattern::new("100!%", Some('!')).unwrap();
        assert!(p.matches("100%"));
        assert!(!p.matches("1000"));
        assert!(LikePattern::new("a!", Some('!')).is_err());
    }

    #[test]
    fn pathological_pattern_is_not_exponential() {
        // Exponential backtracking would never finish this.
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "%a".repeat(200));
        assert!(!like(&text, &pattern));
        assert!(like(&format!("{text}b"), &pattern));
    }
}

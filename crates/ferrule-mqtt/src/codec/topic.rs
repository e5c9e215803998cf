//! Topic Name and Topic Filter syntax (MQTT 5 §4.7).
//!
//! The decoder applies [`validate_topic_name`] to PUBLISH and Will topics.
//! Topic Filters are only checked for being UTF-8 by the decoder; the
//! broker calls [`validate_topic_filter`] when it handles a SUBSCRIBE so it
//! can answer with SUBACK 0x8F (Topic Filter invalid) per filter instead of
//! dropping the connection. Shared subscriptions (`$share/…`, MQTT 5
//! §4.8.2) are the broker's business too.

/// Why a topic name or filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Topic Names and Topic Filters must be at least one character long
    /// [MQTT-4.7.3-1].
    #[error("topic is empty")]
    Empty,
    /// A Topic Name contains `+` or `#` [MQTT-3.3.2-2].
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `#` is not alone in the last level of a filter [MQTT-4.7.1-1].
    #[error("'#' must be the last character and alone in its level")]
    MisplacedMultiLevelWildcard,
    /// `+` does not occupy an entire level of a filter [MQTT-4.7.1-2].
    #[error("'+' must occupy an entire level")]
    MisplacedSingleLevelWildcard,
}

/// Checks a Topic Name: non-empty and free of the wildcards `+` and `#`
/// (MQTT 5 §4.7.1, §4.7.3). Length and U+0000 are already guaranteed by
/// [`MqttStr`](super::MqttStr).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    validate_topic_name_bytes(topic.as_bytes())
}

/// [`validate_topic_name`] on the UTF-8 bytes, for the decoder's hot path.
pub(crate) fn validate_topic_name_bytes(topic: &[u8]) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    check_no_wildcards(topic)
}

/// The wildcard half of Topic Name validation (an empty name is allowed in
/// MQTT 5 PUBLISH when a Topic Alias stands in, so it is checked apart).
pub(crate) fn check_no_wildcards(topic: &[u8]) -> Result<(), TopicError> {
    // '+' and '#' are ASCII, so they never appear inside a multi-byte UTF-8
    // sequence and a byte scan is exact.
    if topic.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a Topic Filter: non-empty, `#` only as the whole last level, `+`
/// only as a whole level (MQTT 5 §4.7.1). `sport/#`, `#`, `+/+`, `/+` and
/// `sport/+/player1` are valid; `sport+`, `sport/#/x` and `sp#` are not.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "/", "sport/tennis/player1", "$SYS/x", " ", "a//b"] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a#b"), Err(TopicError::WildcardInName));
    }

    #[test]
    fn topic_filters_follow_spec_examples() {
        // The valid and invalid examples of MQTT 5 §4.7.1.2 and §4.7.1.3.
        for ok in [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "+/+",
            "/+",
            "/finance",
            "a//b",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        for bad in ["sport/tennis#", "sport/tennis/#/ranking", "#/", "##"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{bad}"
            );
        }
        for bad in ["sport+", "sport/+x", "++"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedSingleLevelWildcard),
                "{bad}"
            );
        }
    }
}

//! Email addresses as the server compares them.

/// The form of an email the server stores, looks up and throttles by: surrounding
/// whitespace removed, ASCII letters lowercased (devise's `case_insensitive_keys` and
/// `strip_whitespace_keys` for `:email`). Every place that compares emails folds them with
/// this one function, so `Jo@Example.com` and `jo@example.com ` are one account
/// everywhere, the throttle included.
pub fn normalize_email(raw: &str) -> String {
    raw.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn folds_case_and_surrounding_whitespace_only() {
        assert_eq!(normalize_email(" Jo@Example.COM\t"), "jo@example.com");
        assert_eq!(normalize_email("jo@example.com"), "jo@example.com");
        // Inner characters and non-ASCII letters are kept as they are.
        assert_eq!(normalize_email("J o@É.com"), "j o@É.com");
    }
}

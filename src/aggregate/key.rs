//! Keys of the top tables: an argument as a label, and the folding of what varies between
//! requests of one kind (ids, literals) so they group as one row.

use crate::probes::tracing::event::ArgValue;

/// Text of argument `index` used as a label or grouping key (terminal-safe, like kernel-side
/// keys); `None` if it is missing or unreadable.
pub fn arg_label(args: &[ArgValue], index: usize) -> Option<String> {
    args.get(index)?.key_text()
}

/// Folds what varies between requests of one kind: runs of digits (ids, numbers) become `N` and
/// single-quoted strings `'?'`. `/api/users/42?page=3` → `/api/users/N?page=N`,
/// `UPDATE t SET a = a + -17 WHERE id = 5;` → `UPDATE t SET a = a + N WHERE id = N;`.
/// Digits inside a word (`pgbench_accounts2`, `v1`) stay: they name things.
pub fn normalize_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        if c == '\'' {
            // A quoted literal: skip to its end ('' is an escaped quote inside).
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    Some('\'') | None => break,
                    Some(_) => {}
                }
            }
            out.push_str("'?'");
            prev = Some('\'');
            continue;
        }
        let in_word = prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ')');
        // A sign belongs to the number when it follows an operator or a space (`+ -17`).
        let signed = c == '-' && !in_word && chars.peek().is_some_and(|d| d.is_ascii_digit());
        if (c.is_ascii_digit() || signed) && !in_word {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '.')
            {
                chars.next();
            }
            out.push('N');
            prev = Some(' ');
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_numbers_and_literals_so_one_kind_of_request_is_one_row() {
        assert_eq!(normalize_key("/api/users/42?page=3"), "/api/users/N?page=N");
        assert_eq!(
            normalize_key("UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 5;"),
            "UPDATE pgbench_accounts SET abalance = abalance + N WHERE aid = N;"
        );
        assert_eq!(
            normalize_key("SELECT 'it''s', v1 FROM t2"),
            "SELECT '?', v1 FROM t2"
        );
        assert_eq!(normalize_key("/slow?ms=50"), "/slow?ms=N");
        assert_eq!(normalize_key("a + 5 - 3"), "a + N - N");
    }
}

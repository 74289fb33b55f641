//! Quoting for SQL text built by hand (identifiers from catalogs and rules, slot and snapshot
//! names). Values from outside go through bind parameters instead wherever a statement allows.

/// `"name"`, embedded double quotes doubled: any string becomes one identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, embedded single quotes doubled; with a backslash, the `E'...'` form with
/// backslashes doubled, which reads the same whatever `standard_conforming_strings` is
/// (libpq's `PQescapeLiteral` does the same).
pub fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("todos"), "\"todos\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident(""), "\"\"");
    }

    #[test]
    fn literals() {
        assert_eq!(quote_literal("a"), "'a'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
    }
}

//! Parser of Postgres array literals (`{1,2,"a b",NULL,{3,4}}`, optionally with a dimension
//! decoration such as `[0:1]={5,6}`), the text form of every array type with `,` as delimiter.

/// One element of a parsed array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayElement {
    Null,
    /// The element's text, with quoting and escapes removed.
    Value(String),
    Array(Vec<ArrayElement>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed array literal at byte {0}")]
pub struct ArrayParseError(pub usize);

/// Postgres allows at most 6 dimensions.
const MAX_DEPTH: usize = 6;

/// Parses an array literal into its (possibly nested) elements.
pub fn parse(text: &str) -> Result<ArrayElement, ArrayParseError> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    if bytes.first() == Some(&b'[') {
        // Dimension decoration: `[lo:hi][lo:hi]=`.
        let eq = text.find('=').ok_or(ArrayParseError(0))?;
        pos = eq + 1;
    }
    let mut p = Parser { bytes, pos };
    p.skip_ws();
    let value = p.array(0)?;
    p.skip_ws();
    if p.pos != bytes.len() {
        return Err(ArrayParseError(p.pos));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn err(&self) -> ArrayParseError {
        ArrayParseError(self.pos)
    }

    fn array(&mut self, depth: usize) -> Result<ArrayElement, ArrayParseError> {
        if depth >= MAX_DEPTH || self.peek() != Some(b'{') {
            return Err(self.err());
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(ArrayElement::Array(items));
        }
        loop {
            self.skip_ws();
            let item = match self.peek() {
                Some(b'{') => self.array(depth + 1)?,
                Some(b'"') => self.quoted()?,
                Some(_) => self.unquoted()?,
                None => return Err(self.err()),
            };
            items.push(item);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(ArrayElement::Array(items));
                }
                _ => return Err(self.err()),
            }
        }
    }

    fn quoted(&mut self) -> Result<ArrayElement, ArrayParseError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err()),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let c = self.bytes.get(self.pos + 1).copied().ok_or(self.err())?;
                    out.push(c);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out)
            .map(ArrayElement::Value)
            .map_err(|_| self.err())
    }

    fn unquoted(&mut self) -> Result<ArrayElement, ArrayParseError> {
        let mut out = Vec::new();
        let mut escaped_any = false;
        loop {
            match self.peek() {
                None => return Err(self.err()),
                Some(b',' | b'}') => break,
                Some(b'{' | b'"') => return Err(self.err()),
                Some(b'\\') => {
                    let c = self.bytes.get(self.pos + 1).copied().ok_or(self.err())?;
                    out.push(c);
                    escaped_any = true;
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        // Trailing whitespace of an unquoted element is not part of it.
        while !escaped_any && out.last().is_some_and(|c| c.is_ascii_whitespace()) {
            out.pop();
        }
        if out.is_empty() {
            return Err(self.err());
        }
        if !escaped_any && out.eq_ignore_ascii_case(b"NULL") {
            return Ok(ArrayElement::Null);
        }
        String::from_utf8(out)
            .map(ArrayElement::Value)
            .map_err(|_| self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArrayElement::{Array, Null, Value};
    use proptest::prelude::*;

    fn v(s: &str) -> ArrayElement {
        Value(s.to_owned())
    }

    #[test]
    fn parses_literals() {
        assert_eq!(parse("{}"), Ok(Array(vec![])));
        assert_eq!(parse("{1, 2 ,NULL}"), Ok(Array(vec![v("1"), v("2"), Null])));
        assert_eq!(
            parse(r#"{"a,b","c\"d","",null,"NULL",e\,f}"#),
            Ok(Array(vec![
                v("a,b"),
                v("c\"d"),
                v(""),
                Null,
                v("NULL"),
                v("e,f")
            ]))
        );
        assert_eq!(
            parse("{{1,2},{3,4}}"),
            Ok(Array(vec![
                Array(vec![v("1"), v("2")]),
                Array(vec![v("3"), v("4")])
            ]))
        );
        assert_eq!(parse("[1:2]={a,b}"), Ok(Array(vec![v("a"), v("b")])));
        assert_eq!(parse("{héllo wörld}"), Ok(Array(vec![v("héllo wörld")])));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "{",
            "{1,",
            "{1,}",
            "{,}",
            "1",
            "{1}}",
            "{\"a}",
            "{{{{{{{1}}}}}}}",
            "[1:2]",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "[{}\",\\\\a-c NUL\\[\\]:=0-9]{0,40}") {
            let _ = parse(&s);
        }
    }
}

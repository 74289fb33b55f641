//! What the replication stream carries: pgoutput messages, and the Postgres text form of
//! column values (scalars and array literals).

use bytes::Bytes;
use riptide_replication::pg_array::{self, ArrayElement};
use riptide_replication::pgoutput;
use riptide_replication::values::{ScalarKind, TimeFormat, ValueKind, convert};
use riptide_rules::SqliteValue;

/// `pgoutput::decode` (outside a streamed transaction's block) and `decode_in_stream` (inside
/// one, protocol 2) never panic; what they decode encodes back to the same bytes' meaning.
pub fn pgoutput(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    if let Ok(message) = pgoutput::decode(&data) {
        let bytes = pgoutput::encode::message(&message);
        let again = pgoutput::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again, message, "pgoutput round trip");
    }
    if let Ok((xid, message)) = pgoutput::decode_in_stream(&data) {
        let bytes = match xid {
            Some(xid) => pgoutput::encode::message_in_stream(xid, &message),
            None => pgoutput::encode::message(&message),
        };
        let again = pgoutput::decode_in_stream(&bytes).expect("an encoded message decodes");
        assert_eq!(
            again,
            (xid, message),
            "pgoutput round trip in a stream block"
        );
    }
}

fn time_format(sel: u8) -> TimeFormat {
    match sel % 3 {
        0 => TimeFormat::Legacy,
        1 => TimeFormat::Iso8601,
        _ => TimeFormat::Iso8601Digits(sel / 3 % 8),
    }
}

fn scalar(sel: u8, format: TimeFormat) -> ScalarKind {
    match sel % 11 {
        0 => ScalarKind::Bool,
        1 => ScalarKind::Integer,
        2 => ScalarKind::Float,
        3 => ScalarKind::Text,
        4 => ScalarKind::Json,
        5 => ScalarKind::Bytea,
        6 => ScalarKind::Date,
        7 => ScalarKind::Time(format),
        8 => ScalarKind::Timestamp(format),
        9 => ScalarKind::Timestamptz(format),
        _ => ScalarKind::Lsn,
    }
}

/// A column value of any kind (two selector bytes: kind and array flag, time format): never
/// panics; an array literal that parses becomes valid JSON array text.
pub fn value(data: &[u8]) {
    let [kind_sel, format_sel, text @ ..] = data else {
        return;
    };
    let elem = scalar(*kind_sel & 0x7F, time_format(*format_sel));
    let kind = if kind_sel & 0x80 != 0 {
        ValueKind::Array(elem)
    } else {
        ValueKind::Scalar(elem)
    };
    let value = convert(kind, text);
    if let ValueKind::Array(_) = kind
        && let Some(t) = crate::text(text)
        && pg_array::parse(t).is_ok()
    {
        let SqliteValue::Text(json) = &value else {
            panic!("an array becomes text, got {value:?}");
        };
        serde_json::from_str::<serde_json::Value>(json).expect("an array becomes valid JSON");
    }
}

/// `pg_array::parse` never panics, and what it parses, written back as a literal with every
/// element quoted, parses to the same elements.
pub fn array(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(parsed) = pg_array::parse(text) else {
        return;
    };
    let mut literal = String::new();
    write_literal(&parsed, &mut literal);
    let again = pg_array::parse(&literal).expect("a written literal parses");
    assert_eq!(again, parsed, "array literal round trip via {literal:?}");
}

fn write_literal(element: &ArrayElement, out: &mut String) {
    match element {
        ArrayElement::Null => out.push_str("NULL"),
        ArrayElement::Value(v) => {
            out.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        ArrayElement::Array(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_literal(item, out);
            }
            out.push('}');
        }
    }
}

//! Sync rules: the YAML document and the SQL of its queries.

use riptide_rules::SyncRules;

/// `SyncRules::parse` of any text: rules or located errors, never a panic.
pub fn yaml(data: &[u8]) {
    if let Some(text) = crate::text(data) {
        check(text);
    }
}

/// One SQL text placed where the rules expect a query (selector: a bucket definition's data
/// query, its parameter query, a stream's query, or a stream's `with` query), quoted as a JSON
/// string (valid YAML), so the fuzzer explores the SQL, not the YAML.
pub fn sql(data: &[u8]) {
    let Some((sel, bytes)) = crate::selector(data) else {
        return;
    };
    let Some(sql) = crate::text(bytes) else {
        return;
    };
    let q = serde_json::to_string(sql).expect("a string serialises");
    let yaml = match sel % 4 {
        0 => format!("bucket_definitions:\n  b:\n    data:\n      - {q}\n"),
        1 => format!(
            "bucket_definitions:\n  b:\n    parameters: {q}\n    data:\n      - SELECT * FROM t WHERE id = bucket.id\n"
        ),
        2 => format!("config:\n  edition: 3\nstreams:\n  s:\n    query: {q}\n"),
        _ => format!(
            "config:\n  edition: 3\nstreams:\n  s:\n    with:\n      p: {q}\n    query: SELECT * FROM t WHERE id IN p\n"
        ),
    };
    check(&yaml);
}

fn check(yaml: &str) {
    match SyncRules::parse(yaml) {
        Ok(rules) => {
            let _ = rules.output_tables();
        }
        Err(errors) => assert!(!errors.0.is_empty(), "an error without a problem"),
    }
}

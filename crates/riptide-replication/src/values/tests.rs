use super::*;

fn t(s: &str) -> SqliteValue {
    SqliteValue::Text(s.to_owned())
}

#[test]
fn golden_table() {
    let cases: Vec<(u32, &str, SqliteValue)> = vec![
        (oid::BOOL, "t", SqliteValue::Integer(1)),
        (oid::BOOL, "f", SqliteValue::Integer(0)),
        (oid::INT2, "-32768", SqliteValue::Integer(-32768)),
        (oid::INT4, "42", SqliteValue::Integer(42)),
        (
            oid::INT8,
            "9223372036854775807",
            SqliteValue::Integer(i64::MAX),
        ),
        (oid::OID, "4294967295", SqliteValue::Integer(4_294_967_295)),
        (oid::FLOAT8, "1.5", SqliteValue::Real(1.5)),
        (
            oid::FLOAT4,
            "-Infinity",
            SqliteValue::Real(f64::NEG_INFINITY),
        ),
        (oid::FLOAT8, "Infinity", SqliteValue::Real(f64::INFINITY)),
        (
            oid::NUMERIC,
            "12345678901234567890.000001",
            t("12345678901234567890.000001"),
        ),
        (oid::NUMERIC, "NaN", t("NaN")),
        (oid::TEXT, "héllo", t("héllo")),
        (oid::VARCHAR, "", t("")),
        (oid::BPCHAR, "ab  ", t("ab  ")),
        (oid::NAME, "pg_class", t("pg_class")),
        (
            oid::UUID,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        (oid::JSON, r#"{"a": [1, 2]}"#, t(r#"{"a": [1, 2]}"#)),
        (oid::JSONB, r#"{"a": 1}"#, t(r#"{"a": 1}"#)),
        (
            oid::TIMESTAMP,
            "2024-05-01 13:45:10.123",
            t("2024-05-01 13:45:10.123"),
        ),
        (oid::TIMESTAMP, "infinity", t("9999-12-31 23:59:59")),
        (oid::TIMESTAMP, "-infinity", t("0000-01-01 00:00:00")),
        (oid::TIMESTAMP, "0044-03-15 12:00:00 BC", SqliteValue::Null),
        (
            oid::TIMESTAMPTZ,
            "2024-05-01 11:45:10.123+00",
            t("2024-05-01 11:45:10.123Z"),
        ),
        (
            oid::TIMESTAMPTZ,
            "2024-05-01 13:45:10+02",
            t("2024-05-01 11:45:10Z"),
        ),
        (
            oid::TIMESTAMPTZ,
            "2024-01-01 00:15:00.5-05:30",
            t("2024-01-01 05:45:00.5Z"),
        ),
        (
            oid::TIMESTAMPTZ,
            "2024-12-31 23:30:00-01",
            t("2025-01-01 00:30:00Z"),
        ),
        (oid::TIMESTAMPTZ, "infinity", t("9999-12-31 23:59:59Z")),
        (oid::TIMESTAMPTZ, "-infinity", t("0000-01-01 00:00:00Z")),
        (
            oid::TIMESTAMPTZ,
            "10022-02-03 09:13:14+00",
            SqliteValue::Null,
        ),
        (
            oid::TIMESTAMPTZ,
            "0022-02-03 12:13:14+03",
            t("0022-02-03 09:13:14Z"),
        ),
        (oid::PG_LSN, "16/B374D848", t("00000016/B374D848")),
        (
            3221,
            "{16/B374D848,NULL}",
            t(r#"["00000016/B374D848",null]"#),
        ),
        (oid::JSONPATH, "$.\"a\"[*]", t("$.\"a\"[*]")),
        (1001, "{\"\\\\x01\"}", t("[null]")),
        (1016, "{9007199254740993}", t("[9007199254740993]")),
        (
            1021,
            "{3.14,1e+20,-0,Infinity}",
            t("[3.14,100000000000000000000,0,null]"),
        ),
        (1183, "{15:47:00}", t(r#"["15:47:00"]"#)),
        (
            1115,
            "{\"2023-03-06 15:47:00\"}",
            t(r#"["2023-03-06 15:47:00"]"#),
        ),
        (
            1009,
            "{{one,1},{three,NULL}}",
            t(r#"[["one","1"],["three",null]]"#),
        ),
        (1009, "{NULL}", t("[null]")),
        (1009, "{\"null\"}", t(r#"["null"]"#)),
        (3907, "{\"[1,5)\",empty}", t(r#"["[1,5)","empty"]"#)),
        (
            oid::TIMESTAMPTZ,
            "0044-03-15 12:00:00+00 BC",
            SqliteValue::Null,
        ),
        (oid::DATE, "2024-05-01", t("2024-05-01")),
        (oid::DATE, "infinity", t("9999-12-31")),
        (oid::DATE, "-infinity", t("0000-01-01")),
        (oid::TIME, "13:45:10.5", t("13:45:10.5")),
        (oid::TIMETZ, "13:45:10+02", t("13:45:10+02")),
        (oid::INTERVAL, "1 day 02:00:00", t("1 day 02:00:00")),
        (oid::MONEY, "$1,000.00", t("$1,000.00")),
        (123_456, "happy", t("happy")),
        (oid::BYTEA, "\\x00ff10", SqliteValue::Blob(vec![0, 255, 16])),
        (oid::BYTEA, "\\x", SqliteValue::Blob(vec![])),
        (
            oid::BYTEA,
            "a\\\\b\\001",
            SqliteValue::Blob(b"a\\b\x01".to_vec()),
        ),
        (1007, "{1,2,NULL}", t("[1,2,null]")),
        (1007, "{{1,2},{3,4}}", t("[[1,2],[3,4]]")),
        (1007, "[0:1]={5,6}", t("[5,6]")),
        (1007, "{}", t("[]")),
        (
            1009,
            r#"{a,"b c","d\"e",NULL,"NULL"}"#,
            t(r#"["a","b c","d\"e",null,"NULL"]"#),
        ),
        (1000, "{t,f}", t("[1,0]")),
        (1022, "{1.5,NaN}", t("[1.5,null]")),
        (
            3807,
            r#"{"{\"a\": 1, \"n\": 18014398509481982123}",null}"#,
            t(r#"[{"a": 1, "n": 18014398509481982123},null]"#),
        ),
        (1231, "{1.10,2}", t(r#"["1.10","2"]"#)),
        (
            1185,
            "{\"2024-05-01 11:45:10+00\"}",
            t(r#"["2024-05-01 11:45:10Z"]"#),
        ),
        (1182, "{infinity}", t(r#"["9999-12-31"]"#)),
        // Garbage stays text rather than failing.
        (oid::INT4, "x", t("x")),
        (oid::BOOL, "maybe", t("maybe")),
        (1007, "{1,2", t("{1,2")),
        (oid::BYTEA, "\\x0", t("\\x0")),
    ];
    for (type_oid, text, expected) in cases {
        let got = convert(value_kind(type_oid), text.as_bytes());
        match (&got, &expected) {
            (SqliteValue::Real(a), SqliteValue::Real(b)) if a.is_nan() && b.is_nan() => {}
            _ => assert_eq!(got, expected, "type {type_oid} text {text:?}"),
        }
    }
    match convert(value_kind(oid::FLOAT8), b"NaN") {
        SqliteValue::Real(f) => assert!(f.is_nan()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn timestamp_max_precision_truncates_iso_values() {
    let with = |digits| ValueOptions {
        time_format: TimeFormat::Iso8601Digits(digits),
        custom_types: true,
    };
    let cases: Vec<(u8, u32, &str, SqliteValue)> = vec![
        (
            3,
            oid::TIMESTAMP,
            "2023-03-06 15:47:12.456789",
            t("2023-03-06T15:47:12.456"),
        ),
        (
            3,
            oid::TIMESTAMP,
            "2023-03-06 15:47:12.4",
            t("2023-03-06T15:47:12.400"),
        ),
        (
            0,
            oid::TIMESTAMP,
            "2023-03-06 15:47:12.999",
            t("2023-03-06T15:47:12"),
        ),
        (
            0,
            oid::TIMESTAMPTZ,
            "2023-03-06 15:47:12.9+01",
            t("2023-03-06T14:47:12Z"),
        ),
        (
            3,
            oid::TIMESTAMPTZ,
            "2023-03-06 15:47:12.98765+01",
            t("2023-03-06T14:47:12.987Z"),
        ),
        (3, oid::TIME, "17:42:01.12", t("17:42:01.120")),
        (0, oid::TIME, "17:42:01.12", t("17:42:01")),
        (9, oid::TIME, "17:42:01.12", t("17:42:01.120000")),
    ];
    for (digits, type_oid, text, expected) in cases {
        let got = convert(value_kind_with(type_oid, with(digits)), text.as_bytes());
        assert_eq!(got, expected, "{digits} digits, {type_oid}: {text}");
    }
    let rules = |config: &str| {
        riptide_rules::SyncRules::parse(&format!(
            "config:\n  edition: 2\n{config}bucket_definitions:\n  b:\n    data: [SELECT * FROM t]\n"
        ))
        .unwrap()
    };
    assert_eq!(
        ValueOptions::from_rules(&rules("  timestamp_max_precision: milliseconds\n")).time_format,
        TimeFormat::Iso8601Digits(3)
    );
    assert_eq!(
        ValueOptions::from_rules(&rules("  timestamp_max_precision: nanoseconds\n")).time_format,
        TimeFormat::Iso8601
    );
}

#[test]
fn iso8601_time_format() {
    let iso = ValueOptions {
        time_format: TimeFormat::Iso8601,
        custom_types: true,
    };
    let cases: Vec<(u32, &str, SqliteValue)> = vec![
        (
            oid::TIMESTAMP,
            "2023-03-06 15:47:12.4",
            t("2023-03-06T15:47:12.400000"),
        ),
        (
            oid::TIMESTAMP,
            "2023-03-06 15:47:00",
            t("2023-03-06T15:47:00.000000"),
        ),
        (oid::TIMESTAMP, "infinity", t("9999-12-31T23:59:59")),
        (oid::TIMESTAMP, "-infinity", t("0000-01-01T00:00:00")),
        (
            oid::TIMESTAMPTZ,
            "2023-03-06 15:47:00+02",
            t("2023-03-06T13:47:00.000000Z"),
        ),
        (
            oid::TIMESTAMPTZ,
            "2023-03-06 15:47:00.12345+02",
            t("2023-03-06T13:47:00.123450Z"),
        ),
        (oid::TIMESTAMPTZ, "infinity", t("9999-12-31T23:59:59Z")),
        (oid::TIMESTAMPTZ, "-infinity", t("0000-01-01T00:00:00Z")),
        (oid::TIME, "17:42:01.12", t("17:42:01.120000")),
        (oid::TIME, "00:00:00", t("00:00:00.000000")),
        (oid::TIMETZ, "13:45:10+02", t("13:45:10+02")),
        (oid::DATE, "infinity", t("9999-12-31")),
        (
            1185,
            "{\"2023-03-06 15:47:00+02\"}",
            t(r#"["2023-03-06T13:47:00.000000Z"]"#),
        ),
        (1183, "{15:47:00}", t(r#"["15:47:00.000000"]"#)),
    ];
    for (type_oid, text, expected) in cases {
        let got = convert(value_kind_with(type_oid, iso), text.as_bytes());
        assert_eq!(got, expected, "type {type_oid} text {text:?}");
    }
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        " ",
        "-",
        "1-2",
        "2024-01-01 ",
        "2024-01-01 x",
        "2024-01-01 1:2:3+",
        "{",
        "[1",
        "\\x",
    ] {
        for type_oid in [
            oid::TIMESTAMP,
            oid::TIMESTAMPTZ,
            oid::TIME,
            oid::PG_LSN,
            1185,
            1115,
            1007,
        ] {
            for format in [TimeFormat::Legacy, TimeFormat::Iso8601] {
                let options = ValueOptions {
                    time_format: format,
                    custom_types: false,
                };
                let _ = convert(value_kind_with(type_oid, options), text.as_bytes());
            }
        }
    }
}

#[test]
fn utc_conversion_matches_days_arithmetic() {
    for days in [-719_528, -1, 0, 1, 11_016, 19_844, 2_932_896] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

/// Found by the `pg_value` fuzz target: an offset of 20 digits overflowed `oh * 3600` (a panic
/// with overflow checks, garbage without). Out-of-range fields are not a time Postgres sends:
/// the value stays as its text.
#[test]
fn timestamptz_fields_out_of_range_are_kept_as_text_not_overflowed() {
    let huge_offset = "20-025-01 13:45:10.727+026666666666666666666:30";
    assert_eq!(convert_timestamptz(huge_offset), huge_offset);
    for text in [
        "2024-13-01 10:00:00+00",
        "2024-05-01 10:61:00+00",
        "2024-05-01 10:00:00+16",
        "9999999999999999-05-01 10:00:00+00",
    ] {
        assert_eq!(convert_timestamptz(text), text, "{text}");
    }
    // In range still converts.
    assert_eq!(
        convert_timestamptz("2024-05-01 13:45:10.123+02"),
        "2024-05-01 11:45:10.123Z"
    );
}

//! RFC 8785 (JCS) vectors, run through the canonicaliser the log entries use, and the
//! canonical form of [`LogEntry`]: §3.2.2 (values), §3.2.3 (property sorting), Appendix B
//! (number formatting), and `weird.json` of the reference implementation
//! (cyberphone/json-canonicalization `testdata`).

use serde_json::{Value, json};
use stela_log::entry::{EntryError, MAX_SAFE_INTEGER};
use stela_log::{LogEntry, Operation, leaf_hash};

fn canonical(input: &str) -> String {
    let value: Value = serde_json::from_str(input).expect("test input is JSON");
    let ours = stela_log::jcs::to_canonical_string(&value);
    // The reference crate agrees on every vector.
    assert_eq!(ours, serde_json_canonicalizer::to_string(&value).expect("canonicalisable"));
    ours
}

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1_i64 << 53)..(1_i64 << 53)).prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC*".prop_map(Value::String),
        proptest::collection::vec(0_u8..0x20, 0..4)
            .prop_map(|bytes| { Value::String(bytes.into_iter().map(char::from).collect()) }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// The log's canonical writer and the reference crate agree on any JSON the log can hold.
    #[test]
    fn canonical_writer_equals_the_reference(value in json_value()) {
        let reference = serde_json_canonicalizer::to_string(&value).expect("canonicalisable");
        proptest::prop_assert_eq!(stela_log::jcs::to_canonical_string(&value), reference);
    }
}

#[test]
fn rfc8785_section_3_2_2_values() {
    let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    let want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    assert_eq!(canonical(input), want);
}

#[test]
fn rfc8785_section_3_2_3_sorting() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
    let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canonical(input), want);
}

#[test]
fn reference_testdata_weird() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\u000a": "Newline",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"#;
    let want = "{\"\\n\":\"Newline\",\"\\r\":\"Carriage Return\",\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canonical(input), want);
}

#[test]
fn rfc8785_appendix_b_numbers() {
    let vectors = [
        (0x0000000000000000u64, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, want) in vectors {
        let number = f64::from_bits(bits);
        assert_eq!(
            serde_json_canonicalizer::to_string(&number).expect("finite"),
            want,
            "{bits:016x}"
        );
        // The same through text, as entries arrive: parse the shortest form back.
        assert_eq!(canonical(want), want, "{want} read back");
    }
    for bits in [0x7fffffffffffffffu64, 0x7ff0000000000000] {
        assert!(serde_json_canonicalizer::to_string(&f64::from_bits(bits)).is_err());
    }
}

fn thing() -> LogEntry {
    LogEntry {
        op: Operation::Create,
        entity_type: "Thing".to_owned(),
        entity_id: 7,
        body: json!({"name": "t1", "@iot.id": 7, "properties": {"b": 1.50, "a": [1e3, "é"]}}),
        committed_at: "2026-11-02T10:00:00.123Z".to_owned(),
        actor: String::new(),
    }
}

#[test]
fn log_entry_canonical_form() {
    let text = thing().to_canonical_json().expect("valid");
    assert_eq!(
        text,
        r#"{"actor":"","body":{"@iot.id":7,"name":"t1","properties":{"a":[1000,"é"],"b":1.5}},"committed_at":"2026-11-02T10:00:00.123Z","entity_id":7,"entity_type":"Thing","op":"create"}"#
    );
    assert_eq!(thing().leaf_hash(), Ok(leaf_hash(text.as_bytes())));
    // Reading back gives the canonical value (1e3 comes back as the integer 1000).
    let read_back = LogEntry::from_canonical_json(&text).expect("canonical");
    assert_eq!(read_back.to_canonical_json(), Ok(text.clone()));
    assert_eq!(read_back.body["properties"]["a"][0], json!(1000));

    let delete = LogEntry::delete("Datastream", 42, "2026-11-02T10:00:00Z", "");
    assert_eq!(
        delete.to_canonical_json().expect("valid"),
        r#"{"actor":"","body":{"@iot.id":42},"committed_at":"2026-11-02T10:00:00Z","entity_id":42,"entity_type":"Datastream","op":"delete"}"#
    );
}

#[test]
fn non_canonical_entries_are_refused() {
    let text = thing().to_canonical_json().expect("valid");
    let variants = [
        text.replace(r#""actor":"","#, r#""actor": "","#),
        text.replace(r#"{"actor":"","#, r#"{"op":"create","actor":"","#)
            .replace(r#","op":"create"}"#, "}"),
        text.replace("1.5", "1.50"),
        text.replace("1000", "1e3"),
        text.replace("é", "\\u00e9"),
        format!("{text}\n"),
        format!(" {text}"),
    ];
    for variant in variants {
        assert_ne!(variant, text);
        assert!(LogEntry::from_canonical_json(&variant).is_err(), "accepted {variant}");
    }
    let unknown_field = text.replace(r#"{"actor":"","#, r#"{"actor":"","extra":1,"#);
    assert!(matches!(
        LogEntry::from_canonical_json(&unknown_field),
        Err(EntryError::NotAnEntry(_))
    ));
    let duplicate_key = text.replace(r#"{"actor":"","#, r#"{"actor":"x","actor":"","#);
    assert!(LogEntry::from_canonical_json(&duplicate_key).is_err());
}

#[test]
fn numbers_that_jcs_would_round_are_refused() {
    let mut entry = thing();
    entry.entity_id = MAX_SAFE_INTEGER as i64;
    assert!(entry.to_canonical_json().is_ok());
    entry.entity_id = MAX_SAFE_INTEGER as i64 + 2;
    assert_eq!(
        entry.to_canonical_json(),
        Err(EntryError::UnsafeNumber { path: "/entity_id".to_owned() })
    );
    let mut entry = thing();
    entry.body = json!({"result": [1, {"a/b": 9007199254740993u64}]});
    assert_eq!(
        entry.to_canonical_json(),
        Err(EntryError::UnsafeNumber { path: "/body/result/1/a~1b".to_owned() })
    );
    entry.body = json!({"result": i64::MIN});
    assert!(entry.to_canonical_json().is_err(), "2^63 prints as 9223372036854776000");
    // A large integer that a double holds and JCS spells exactly survives a round trip.
    entry.body = json!({"result": 10_000_000_000_000_000_000u64});
    let text = entry.to_canonical_json().expect("exact");
    assert_eq!(LogEntry::from_canonical_json(&text), Ok(entry.clone()));
    // A float in the same range too.
    entry.body = json!({"result": 1.5e18});
    let text = entry.to_canonical_json().expect("exact");
    assert!(text.contains("1500000000000000000"));
    assert!(LogEntry::from_canonical_json(&text).is_ok());
}

#[test]
fn bad_timestamps_and_nesting_are_refused() {
    let mut entry = thing();
    entry.committed_at = "yesterday".to_owned();
    assert!(matches!(entry.to_canonical_json(), Err(EntryError::InvalidTimestamp(_))));
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let mut entry = thing();
    entry.body = deep;
    assert_eq!(entry.to_canonical_json(), Err(EntryError::TooDeep));
}

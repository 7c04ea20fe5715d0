//! Property tests: no input makes any parse function panic or overflow the stack, and
//! whatever parses also survives a print/parse round trip.

use proptest::prelude::*;
use stela_query::{parse_expand, parse_filter, parse_orderby, parse_query_options, parse_select};

use crate::golden::inputs;

const KEYS: &[&str] = &["$filter", "$orderby", "$select", "$expand", "$top", "$skip", "$count"];

/// Runs every entry point on `input`; panics only if an accepted filter does not round-trip.
fn exercise(input: &str) {
    if let Ok(expr) = parse_filter(input) {
        let printed = expr.to_string();
        assert_eq!(
            parse_filter(&printed).as_ref(),
            Ok(&expr),
            "input {input:?} printed {printed:?}"
        );
    }
    let _ = parse_orderby(input);
    let _ = parse_select(input);
    if let Ok(items) = parse_expand(input) {
        let printed: Vec<_> = items.iter().map(ToString::to_string).collect();
        assert_eq!(parse_expand(&printed.join(",")).as_ref(), Ok(&items), "input {input:?}");
    }
    for key in KEYS {
        let _ = parse_query_options(&[((*key).to_owned(), input.to_owned())]);
    }
}

/// Text built from the language's own pieces, so that the parser gets past the lexer.
fn token_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "name",
        "Datastreams",
        "/",
        "(",
        ")",
        ",",
        ";",
        "=",
        ":",
        "-",
        " ",
        "'a'",
        "'",
        "1",
        "-2",
        "1.5",
        "2015-03-01T00:00:00Z",
        "2015-03-01",
        "12:30",
        "duration'P1D'",
        "geography'POINT(1 2)'",
        "eq",
        "and",
        "or",
        "not",
        "in",
        "add",
        "mul",
        "any",
        "all",
        "d:",
        "substring",
        "now()",
        "$filter",
        "$top",
        "$expand",
        "$select",
        "$orderby",
        "desc",
        "true",
        "null",
        "@iot.id",
        "geo.distance",
        "((",
        "))",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A golden input with a few random edits (delete, insert, duplicate), on char boundaries.
fn mutated_golden_input() -> impl Strategy<Value = String> {
    let corpus: Vec<String> =
        inputs("ok").into_iter().chain(inputs("err")).map(|(_, text)| text).collect();
    let edit = (0..3u8, any::<prop::sample::Index>(), any::<prop::sample::Index>(), "\\PC{0,3}");
    (prop::sample::select(corpus), prop::collection::vec(edit, 1..4)).prop_map(|(text, edits)| {
        let mut chars: Vec<char> = text.chars().collect();
        for (kind, at, to, insert) in edits {
            let at = at.index(chars.len() + 1);
            match kind {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 => {
                    chars.splice(at..at, insert.chars());
                }
                _ => {
                    let end = at + to.index(chars.len() - at + 1);
                    let copy: Vec<char> = chars[at..end].to_vec();
                    chars.splice(at..at, copy);
                }
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn any_unicode_text(input in "\\PC{0,40}") {
        exercise(&input);
    }

    #[test]
    fn language_characters(input in "[a-zA-Z0-9 '()/,:;=$@.+_TZ-]{0,40}") {
        exercise(&input);
    }

    #[test]
    fn token_soups(input in token_soup()) {
        exercise(&input);
    }

    #[test]
    fn mutated_golden_inputs(input in mutated_golden_input()) {
        exercise(&input);
    }
}

//! Fuzz target for the query parsers: any UTF-8 input goes through `parse_filter` and the
//! list parsers, and, read as a query string (`k=v&k=v`), through `parse_query_options`.
//! Besides "never panics", it checks that whatever parses prints to text that parses back to
//! an equal value. The seed corpus in `corpus/filter` is a copy of `test_data/ok`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stela_query::{parse_expand, parse_filter, parse_orderby, parse_query_options, parse_select};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };

    if let Ok(expr) = parse_filter(input) {
        let printed = expr.to_string();
        assert_eq!(parse_filter(&printed).as_ref(), Ok(&expr), "printed: {printed}");
    }
    let _ = parse_orderby(input);
    let _ = parse_select(input);
    let _ = parse_expand(input);

    let pairs: Vec<(String, String)> = input
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    if let Ok(options) = parse_query_options(&pairs) {
        let canonical = options.to_pairs();
        assert_eq!(parse_query_options(&canonical).as_ref(), Ok(&options), "pairs: {canonical:?}");
    }
});

//! `parse_query_options` and the list options: every option, nested and slash-path
//! `$expand`, merging, duplicates, bad values, unknown options, and error positions.

use stela_query::{ErrorCode, parse_expand, parse_orderby, parse_query_options, parse_select};

/// Parses `pairs` and compares the canonical form (or the error and its code) with `expect`.
fn check(pairs: &[(&str, &str)], expect: &str) {
    let pairs: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let actual = match parse_query_options(&pairs) {
        Ok(options) => {
            // Whatever parses must also read back from its canonical pairs.
            let reparsed = parse_query_options(&options.to_pairs());
            assert_eq!(reparsed.as_ref(), Ok(&options), "canonical pairs do not round-trip");
            options.to_string()
        }
        Err(error) => format!("{:?}: {error}", error.code()),
    };
    assert_eq!(actual, expect, "for {pairs:?}");
}

#[test]
fn every_option_at_top_level() {
    check(
        &[
            ("$filter", "name eq 'a'"),
            ("$select", "@iot.id,id,name,Datastreams,properties/a"),
            ("$orderby", "phenomenonTime desc,id asc,name"),
            ("$expand", "Thing"),
            ("$top", "10"),
            ("$skip", "0"),
            ("$count", "true"),
            ("$resultFormat", "dataArray"),
        ],
        "$filter=name eq 'a'&$select=@iot.id,id,name,Datastreams,properties/a\
         &$orderby=phenomenonTime desc,id,name&$expand=Thing&$top=10&$skip=0&$count=true\
         &$resultFormat=dataArray",
    );
}

#[test]
fn fields_are_filled() {
    let pairs = [
        ("$top", "5"),
        ("$skip", "18446744073709551615"),
        ("$count", "false"),
        ("$resultFormat", "anything goes"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let options = parse_query_options(&pairs).expect("valid options");
    assert_eq!(options.top, Some(5));
    assert_eq!(options.skip, Some(u64::MAX));
    assert_eq!(options.count, Some(false));
    assert_eq!(options.result_format.as_deref(), Some("anything goes"));
    assert!(options.filter.is_none() && options.select.is_none());
    assert!(options.orderby.is_empty() && options.expand.is_empty());
}

#[test]
fn empty_query_and_custom_parameters() {
    check(&[], "");
    check(&[("foo", "bar"), ("top", "-1"), ("", "")], "");
}

#[test]
fn unknown_and_unsupported_options() {
    check(
        &[("$search", "x")],
        "UnsupportedOption: invalid $search: unsupported query option '$search' at 0: x",
    );
    check(
        &[("$Top", "1")],
        "UnsupportedOption: invalid $Top: unsupported query option '$Top' at 0: 1",
    );
    check(&[("$", "")], "UnsupportedOption: invalid $: unsupported query option '$' at 0: ");
    check(
        &[("$expand", "Datastreams($levels=2)")],
        "UnsupportedOption: invalid $expand: unsupported query option '$levels' in $expand at 12: \
         Datastreams($levels=2)",
    );
    check(
        &[("$expand", "Observations($resultFormat=dataArray)")],
        "UnsupportedOption: invalid $expand: unsupported query option '$resultFormat' in $expand \
         at 13: Observations($resultFormat=dataArray)",
    );
}

#[test]
fn duplicate_options() {
    check(
        &[("$top", "1"), ("$top", "2")],
        "InvalidQuery: invalid $top: duplicate query option '$top' at 0: 2",
    );
    check(
        &[("$filter", "id eq 1"), ("x", "y"), ("$filter", "id eq 2")],
        "InvalidQuery: invalid $filter: duplicate query option '$filter' at 0: id eq 2",
    );
    check(
        &[("$expand", "Datastreams($top=1;$top=2)")],
        "InvalidQuery: invalid $expand: duplicate query option '$top' at 19: \
         Datastreams($top=1;$top=2)",
    );
}

#[test]
fn bad_top_and_skip() {
    check(&[("$top", "0")], "$top=0");
    for bad in ["-1", "+1", "1.5", " 1", "1 ", "abc", "18446744073709551616", "0x10"] {
        check(
            &[("$top", bad)],
            &format!(
                "InvalidQuery: invalid $top: expected a non-negative integer, found '{bad}' at 0: {bad}"
            ),
        );
    }
    check(&[("$skip", "")], "InvalidQuery: invalid $skip: expected a non-negative integer at 0: ");
    check(
        &[("$expand", "Observations($top=-1)")],
        "InvalidQuery: invalid $expand: expected a non-negative integer, found '-1' at 18: \
         Observations($top=-1)",
    );
    check(
        &[("$expand", "Observations($top=18446744073709551615)")],
        "$expand=Observations($top=18446744073709551615)",
    );
    check(
        &[("$expand", "Observations($top=18446744073709551616)")],
        "InvalidQuery: invalid $expand: expected a non-negative integer, found \
         '18446744073709551616' at 18: Observations($top=18446744073709551616)",
    );
    check(
        &[("$expand", "Observations($skip=1.5)")],
        "InvalidQuery: invalid $expand: expected a non-negative integer, found '1.5' at 19: \
         Observations($skip=1.5)",
    );
}

#[test]
fn bad_count() {
    check(&[("$count", "false")], "$count=false");
    for bad in ["TRUE", "True", "1", "yes", "true "] {
        check(
            &[("$count", bad)],
            &format!(
                "InvalidQuery: invalid $count: expected 'true' or 'false', found '{bad}' at 0: {bad}"
            ),
        );
    }
    check(&[("$count", "")], "InvalidQuery: invalid $count: expected 'true' or 'false' at 0: ");
    check(
        &[("$expand", "Observations($count=1)")],
        "InvalidQuery: invalid $expand: expected 'true' or 'false', found '1' at 20: \
         Observations($count=1)",
    );
}

#[test]
fn nested_expand_with_every_option() {
    check(
        &[(
            "$expand",
            "Datastreams($select=name;$filter=name eq 'a';$orderby=id desc;$top=2;$skip=1;\
             $count=true;$expand=Observations($top=1;$orderby=phenomenonTime desc))",
        )],
        "$expand=Datastreams($filter=name eq 'a';$select=name;$orderby=id desc;\
         $expand=Observations($orderby=phenomenonTime desc;$top=1);$top=2;$skip=1;$count=true)",
    );
    let items = parse_expand("Datastreams($top=2;$expand=Observations($top=1))").expect("valid");
    let datastreams = &items[0];
    assert_eq!(datastreams.path, ["Datastreams"]);
    assert_eq!(datastreams.options.top, Some(2));
    assert_eq!(datastreams.span, 0..48);
    let observations = &datastreams.options.expand[0];
    assert_eq!(observations.path, ["Observations"]);
    assert_eq!(observations.options.top, Some(1));
    assert_eq!(observations.span, 27..47);
}

#[test]
fn nested_strings_may_contain_separators() {
    check(
        &[("$expand", "Datastreams($filter=name eq 'a;b)c,d';$top=1),Thing")],
        "$expand=Datastreams($filter=name eq 'a;b)c,d';$top=1),Thing",
    );
}

#[test]
fn slash_paths_normalise_to_nested_items() {
    check(&[("$expand", "Datastreams/Observations")], "$expand=Datastreams($expand=Observations)");
    check(
        &[("$expand", "Things/Datastreams/Observations($top=1)")],
        "$expand=Things($expand=Datastreams($expand=Observations($top=1)))",
    );
    let items = parse_expand("Datastreams/Observations($top=1)").expect("valid");
    assert_eq!(items[0].span, 0..32);
    assert_eq!(items[0].options.expand[0].span, 12..32);
}

#[test]
fn items_with_the_same_navigation_property_merge() {
    check(
        &[("$expand", "Datastreams/Sensor,Datastreams/Thing")],
        "$expand=Datastreams($expand=Sensor,Thing)",
    );
    check(
        &[("$expand", "Datastreams($top=1),Datastreams/Thing,Thing,Datastreams/Thing/Locations")],
        "$expand=Datastreams($expand=Thing($expand=Locations);$top=1),Thing",
    );
    check(&[("$expand", "Thing,Thing")], "$expand=Thing");
    check(
        &[("$expand", "Datastreams($top=1),Datastreams($top=2)")],
        "InvalidQuery: invalid $expand: conflicting $top for expanded 'Datastreams' at 20: \
         Datastreams($top=1),Datastreams($top=2)",
    );
    check(
        &[("$expand", "Datastreams/Thing($select=name),Datastreams/Thing($select=id)")],
        "InvalidQuery: invalid $expand: conflicting $select for expanded 'Thing' at 44: \
         Datastreams/Thing($select=name),Datastreams/Thing($select=id)",
    );
}

#[test]
fn expand_syntax_errors() {
    check(
        &[("$expand", "Datastreams($top=1")],
        "InvalidQuery: invalid $expand: expected ';' or ')' at 18: Datastreams($top=1",
    );
    check(
        &[("$expand", "Datastreams()")],
        "InvalidQuery: invalid $expand: expected a query option such as '$filter', found ')' at 12: \
         Datastreams()",
    );
    check(
        &[("$expand", "Datastreams($filter=name eq 'a' AND id eq 1)")],
        "InvalidQuery: invalid $expand: unexpected word 'AND', expected an operator, ';' or ')' \
         (keywords are lowercase: 'and') at 32: Datastreams($filter=name eq 'a' AND id eq 1)",
    );
    check(
        &[("$expand", "Datastreams($filter=foo(x))")],
        "InvalidQuery: invalid $expand: unknown function 'foo' at 20: Datastreams($filter=foo(x))",
    );
    check(
        &[("$expand", "Datastreams/ Thing")],
        "InvalidQuery: invalid $expand: expected a navigation property after '/', found 'Thing' \
         at 13: Datastreams/ Thing",
    );
    check(
        &[("$expand", "Datastreams Thing")],
        "InvalidQuery: invalid $expand: unexpected word 'Thing', expected ',', '/' or '(' at 12: \
         Datastreams Thing",
    );
    check(
        &[("$expand", "")],
        "InvalidQuery: invalid $expand: expected a navigation property at 0: ",
    );
    check(
        &[("$expand", "$select")],
        "InvalidQuery: invalid $expand: expected a navigation property, found '$select' at 0: $select",
    );
}

#[test]
fn filter_errors_keep_the_option_name() {
    check(
        &[("$filter", "name eq 'a' and (x gt 1")],
        "InvalidQuery: invalid $filter: expected ')' at 23: name eq 'a' and (x gt 1",
    );
    check(&[("$filter", "")], "InvalidQuery: invalid $filter: expected expression at 0: ");
}

#[test]
fn select_lists() {
    let items = parse_select("@iot.id,properties/a/b,Datastreams").expect("valid");
    let paths: Vec<_> = items.iter().map(|item| item.path.join("/")).collect();
    assert_eq!(paths, ["@iot.id", "properties/a/b", "Datastreams"]);
    assert_eq!(items[1].span, 8..22);
    check(
        &[("$select", "name,")],
        "InvalidQuery: invalid $select: expected a property name at 5: name,",
    );
    check(
        &[("$select", "name id")],
        "InvalidQuery: invalid $select: unexpected word 'id', expected ',' or '/' at 5: name id",
    );
    check(&[("$select", "*")], "InvalidQuery: invalid $select: unexpected character '*' at 0: *");
}

#[test]
fn orderby_lists() {
    let items = parse_orderby("phenomenonTime desc, length(name) asc,id").expect("valid");
    let rendered: Vec<_> = items.iter().map(ToString::to_string).collect();
    assert_eq!(rendered, ["phenomenonTime desc", "length(name)", "id"]);
    assert!(items[0].descending && !items[1].descending && !items[2].descending);
    check(
        &[("$orderby", "name DESC")],
        "InvalidQuery: invalid $orderby: unexpected word 'DESC', expected an operator, 'asc', \
         'desc' or ',' (keywords are lowercase: 'desc') at 5: name DESC",
    );
    check(&[("$orderby", "")], "InvalidQuery: invalid $orderby: expected expression at 0: ");
}

#[test]
fn error_codes() {
    let unsupported = parse_query_options(&[("$apply".to_owned(), String::new())]);
    assert_eq!(unsupported.map_err(|e| e.code()), Err(ErrorCode::UnsupportedOption));
    let deep = "A($expand=".repeat(80) + "B" + &")".repeat(80);
    let too_deep = parse_query_options(&[("$expand".to_owned(), deep)]);
    assert_eq!(too_deep.map_err(|e| e.code()), Err(ErrorCode::NestingTooDeep));
}

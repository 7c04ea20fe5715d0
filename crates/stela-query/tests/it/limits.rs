//! The recursion and height limits: deep input is refused with `NestingTooDeep`, never by a
//! stack overflow, and the deepest accepted input still prints, compares and drops.

use stela_query::{
    ErrorCode, MAX_DEPTH, MAX_EXPR_HEIGHT, QueryError, parse_expand, parse_filter,
    parse_query_options,
};

fn code<T>(result: Result<T, QueryError>) -> Option<ErrorCode> {
    result.err().map(|error| error.code())
}

fn parens(depth: usize) -> String {
    "(".repeat(depth) + "x" + &")".repeat(depth)
}

#[test]
fn parentheses_nest_up_to_max_depth() {
    assert!(parse_filter(&parens(MAX_DEPTH)).is_ok());
    assert_eq!(code(parse_filter(&parens(MAX_DEPTH + 1))), Some(ErrorCode::NestingTooDeep));
    assert_eq!(code(parse_filter(&parens(200_000))), Some(ErrorCode::NestingTooDeep));
}

#[test]
fn unary_chains_are_capped() {
    for prefix in ["not ", "-", "- ", "length("] {
        let input = prefix.repeat(100_000) + "x";
        assert_eq!(code(parse_filter(&input)), Some(ErrorCode::NestingTooDeep), "{prefix}");
    }
    let ok = "not ".repeat(MAX_DEPTH) + "x";
    assert!(parse_filter(&ok).is_ok());
}

#[test]
fn nested_calls_lambdas_and_lists_count_as_depth() {
    let calls = "length(".repeat(MAX_DEPTH + 1) + "x" + &")".repeat(MAX_DEPTH + 1);
    assert_eq!(code(parse_filter(&calls)), Some(ErrorCode::NestingTooDeep));
    let lambdas = "a/any(v:".repeat(MAX_DEPTH + 1) + "v" + &")".repeat(MAX_DEPTH + 1);
    assert_eq!(code(parse_filter(&lambdas)), Some(ErrorCode::NestingTooDeep));
    let lists = "x in (".repeat(MAX_DEPTH + 1) + "1" + &")".repeat(MAX_DEPTH + 1);
    assert_eq!(code(parse_filter(&lists)), Some(ErrorCode::NestingTooDeep));
}

#[test]
fn long_operator_chains_are_capped_by_height() {
    // `x eq N` has height 2 and each `or` adds one level.
    let terms = MAX_EXPR_HEIGHT - 1;
    let chain: Vec<String> = (0..terms).map(|n| format!("x eq {n}")).collect();
    let expr = parse_filter(&chain.join(" or ")).expect("a chain at the limit parses");
    let printed = expr.to_string();
    assert_eq!(parse_filter(&printed).expect("reparses"), expr);
    drop(expr);

    let too_long: Vec<String> = (0..terms + 1).map(|n| format!("x eq {n}")).collect();
    let error = parse_filter(&too_long.join(" or ")).expect_err("one level too many");
    assert_eq!(error.code(), ErrorCode::NestingTooDeep);
    assert!(error.message.starts_with("expression too deep"), "{}", error.message);

    let huge = vec!["1"; 200_000].join(" add ");
    assert_eq!(code(parse_filter(&huge)), Some(ErrorCode::NestingTooDeep));
}

#[test]
fn in_lists_are_flat_and_unlimited() {
    let list: Vec<String> = (0..20_000).map(|n| n.to_string()).collect();
    let input = format!("id in ({})", list.join(","));
    assert!(parse_filter(&input).is_ok());
}

#[test]
fn expand_nesting_is_capped() {
    let nested = |depth: usize| "A($expand=".repeat(depth) + "B" + &")".repeat(depth);
    assert!(parse_expand(&nested(MAX_DEPTH - 1)).is_ok());
    assert_eq!(code(parse_expand(&nested(MAX_DEPTH + 1))), Some(ErrorCode::NestingTooDeep));
    assert_eq!(code(parse_expand(&nested(50_000))), Some(ErrorCode::NestingTooDeep));

    let slashes = |segments: usize| vec!["A"; segments].join("/");
    assert!(parse_expand(&slashes(MAX_DEPTH)).is_ok());
    assert_eq!(code(parse_expand(&slashes(MAX_DEPTH + 1))), Some(ErrorCode::NestingTooDeep));
    assert_eq!(code(parse_expand(&slashes(100_000))), Some(ErrorCode::NestingTooDeep));

    // Depth adds up across nested options, slash paths and filter parentheses.
    let mixed = "A($expand=".repeat(40) + &slashes(30) + &")".repeat(40);
    let pairs = [("$expand".to_owned(), mixed)];
    assert_eq!(code(parse_query_options(&pairs)), Some(ErrorCode::NestingTooDeep));
}

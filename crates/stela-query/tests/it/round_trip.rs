//! Property tests: random ASTs print to text that parses back to an equal AST, for filters
//! and for whole option sets with nested `$expand`.

use proptest::prelude::*;
use stela_query::{
    BinaryOp, Date, DateTimeOffset, Duration, ExpandItem, Expr, ExprKind, Function,
    LambdaPredicate, Literal, OrderBy, Quantifier, QueryOptions, SelectItem, TimeOfDay, UnaryOp,
    parse_filter, parse_query_options,
};

/// Words that cannot be the first segment of a path or a lambda variable.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod",
    "in", "asc", "desc", "true", "false", "null", "any", "all",
];

fn expr(kind: ExprKind) -> Expr {
    Expr::new(kind, 0..0)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("keyword", |s| !KEYWORDS.contains(&s.as_str()))
}

/// A segment after `/`: any word, keywords and leading digits included.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![name(), "[a-z0-9_]{1,6}", Just("and".to_owned()), Just("@iot.id".to_owned())]
}

fn path() -> impl Strategy<Value = Vec<String>> {
    let first = prop_oneof![4 => name(), 1 => Just("@iot.id".to_owned())];
    (first, prop::collection::vec(segment(), 0..3)).prop_map(|(first, mut rest)| {
        rest.insert(0, first);
        rest
    })
}

fn date() -> impl Strategy<Value = Date> {
    (0..=9999i32, 1..=12u8, 1..=28u8).prop_map(|(year, month, day)| Date { year, month, day })
}

fn time_of_day() -> impl Strategy<Value = TimeOfDay> {
    (0..24u8, 0..60u8, 0..60u8, prop_oneof![Just(0u32), 0..1_000_000_000u32]).prop_map(
        |(hour, minute, second, nanosecond)| TimeOfDay { hour, minute, second, nanosecond },
    )
}

fn duration() -> impl Strategy<Value = Duration> {
    let small = || prop_oneof![Just(0u64), 0..100u64];
    (any::<bool>(), (small(), small(), small(), small()), (small(), small(), small()), 0..3u32)
        .prop_map(|(negative, (years, months, weeks, days), (hours, minutes, seconds), frac)| {
            Duration {
                negative,
                years,
                months,
                weeks,
                days,
                hours,
                minutes,
                seconds,
                nanoseconds: frac * 250_000_000,
            }
        })
}

fn decimal() -> impl Strategy<Value = Literal> {
    let mantissa = ("-?[0-9]{1,6}", prop::option::of("[0-9]{1,4}"));
    let exponent = prop::option::of("[eE][+-]?[0-9]{1,2}");
    (mantissa, exponent)
        .prop_filter("needs a fraction or exponent", |((_, frac), exp)| {
            frac.is_some() || exp.is_some()
        })
        .prop_map(|((int, frac), exp)| {
            let mut text = int;
            if let Some(frac) = frac {
                text = format!("{text}.{frac}");
            }
            if let Some(exp) = exp {
                text.push_str(&exp);
            }
            let value = text.parse().expect("generated decimal text is valid");
            Literal::Decimal { value, text }
        })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        decimal(),
        "\\PC{0,8}".prop_map(Literal::String),
        "['a-z ]{0,6}".prop_map(Literal::String),
        (date(), time_of_day(), -1439..=1439i16).prop_map(|(date, time, offset_minutes)| {
            Literal::DateTimeOffset(DateTimeOffset { date, time, offset_minutes })
        }),
        date().prop_map(Literal::Date),
        time_of_day().prop_map(Literal::TimeOfDay),
        duration().prop_map(Literal::Duration),
        "[A-Z]{1,5}\\([0-9 ,']{0,8}\\)".prop_map(Literal::Geography),
        "[A-Z]{1,5}\\([0-9 ,]{0,8}\\)".prop_map(Literal::Geometry),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        literal().prop_map(|l| expr(ExprKind::Literal(l))),
        path().prop_map(|p| expr(ExprKind::Path(p))),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let unary = (prop_oneof![Just(UnaryOp::Not), Just(UnaryOp::Neg)], inner.clone())
            .prop_map(|(op, operand)| expr(ExprKind::Unary { op, operand: Box::new(operand) }));
        let binary = (prop::sample::select(BinaryOp::ALL.to_vec()), inner.clone(), inner.clone())
            .prop_map(|(op, lhs, rhs)| {
                expr(ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) })
            });
        let in_list = (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
            .prop_map(|(lhs, list)| expr(ExprKind::In { lhs: Box::new(lhs), list }));
        let call_inner = inner.clone();
        let call = prop::sample::select(Function::ALL.to_vec()).prop_flat_map(move |function| {
            let arity = function.arity();
            prop::collection::vec(call_inner.clone(), *arity.start()..=*arity.end())
                .prop_map(move |args| expr(ExprKind::Call { function, args }))
        });
        let lambda = (path(), any::<bool>(), prop::option::of((name(), inner))).prop_map(
            |(collection, all, predicate)| {
                let predicate = predicate
                    .map(|(variable, body)| LambdaPredicate { variable, body: Box::new(body) });
                // `all()` without a predicate is not valid syntax.
                let quantifier =
                    if all && predicate.is_some() { Quantifier::All } else { Quantifier::Any };
                expr(ExprKind::Lambda { collection, quantifier, predicate })
            },
        );
        prop_oneof![unary, binary, in_list, call, lambda]
    })
}

fn arb_options(depth: u32) -> BoxedStrategy<QueryOptions> {
    let select = prop::option::of(prop::collection::vec(
        path().prop_map(|path| SelectItem { path, span: 0..0 }),
        1..3,
    ));
    let orderby = prop::collection::vec(
        (arb_expr(), any::<bool>()).prop_map(|(expr, descending)| OrderBy { expr, descending }),
        0..3,
    );
    let expand = if depth == 0 {
        Just(Vec::new()).boxed()
    } else {
        // Distinct names, since items with the same name merge when parsed.
        prop::collection::btree_map(name(), arb_options(depth - 1), 0..3)
            .prop_map(|items| {
                items
                    .into_iter()
                    .map(|(name, mut options)| {
                        options.result_format = None;
                        ExpandItem { path: vec![name], options, span: 0..0 }
                    })
                    .collect()
            })
            .boxed()
    };
    let numbers = (
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<bool>()),
        prop::option::of("\\PC{0,8}"),
    );
    (prop::option::of(arb_expr()), select, orderby, expand, numbers)
        .prop_map(|(filter, select, orderby, expand, (top, skip, count, result_format))| {
            QueryOptions { filter, orderby, select, expand, top, skip, count, result_format }
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn printed_filters_parse_back(expr in arb_expr()) {
        let printed = expr.to_string();
        match parse_filter(&printed) {
            Ok(reparsed) => prop_assert_eq!(reparsed, expr, "printed: {}", printed),
            Err(error) => prop_assert!(false, "printed: {printed}\nerror: {error}"),
        }
    }

    #[test]
    fn printed_options_parse_back(options in arb_options(2)) {
        let pairs = options.to_pairs();
        match parse_query_options(&pairs) {
            Ok(reparsed) => prop_assert_eq!(reparsed, options, "pairs: {:?}", pairs),
            Err(error) => prop_assert!(false, "pairs: {pairs:?}\nerror: {error}"),
        }
    }
}

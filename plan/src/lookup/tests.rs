//! The lookup plan without a store: keys, columns, `on_missing`, values.

use super::*;
use arrow_array::{DictionaryArray, Int64Array, StringArray};
use weir_proto::spec::parse_spec;

/// A lookup step from YAML (the part after `lookup:`).
fn step(yaml: &str) -> pb::LookupStep {
    let spec = parse_spec(&format!(
        "name: t\nsource:\n  generator: {{}}\npipeline:\n  - lookup: {yaml}\nsink:\n  stdout: {{}}\n"
    ))
    .unwrap();
    match &spec.pipeline[0].kind {
        Some(pb::step::Kind::Lookup(l)) => l.clone(),
        other => panic!("{other:?}"),
    }
}

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
    ]))
}

fn batch(users: Vec<Option<&str>>) -> RecordBatch {
    let n = users.len() as i64;
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(StringArray::from(users)),
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(arrow_array::Float64Array::from_iter_values(
                (0..n).map(|v| v as f64),
            )),
        ],
    )
    .unwrap()
}

fn plan(yaml: &str) -> LookupPlan {
    LookupPlan::compile("pipeline[0].lookup".into(), &step(yaml), &input()).unwrap()
}

fn values(v: &[Option<&str>]) -> Option<Arc<Values>> {
    Some(Arc::new(v.iter().map(|s| s.map(String::from)).collect()))
}

const PROFILE: &str = "{ redis: { url: \"redis://h\", key: \"'u:' || user\", fields: { name: string, age: bigint, score: double, vip: boolean } } }";

#[test]
fn the_columns_follow_the_input_and_the_key_is_typed() {
    let p = plan(PROFILE);
    let names: Vec<&str> = p
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["user", "n", "x", "name", "age", "score", "vip"]);
    let types: Vec<&DataType> = p.output_schema().fields()[3..]
        .iter()
        .map(|f| f.data_type())
        .collect();
    assert_eq!(
        types,
        [
            &DataType::Utf8,
            &DataType::Int64,
            &DataType::Float64,
            &DataType::Boolean
        ]
    );
    assert!(p.output_schema().fields()[3..]
        .iter()
        .all(|f| f.is_nullable()));
    assert_eq!(
        p.field_names().collect::<Vec<_>>(),
        ["name", "age", "score", "vip"]
    );
    assert_eq!(p.layout(), Layout::Hash);
    // A BIGINT key is looked up by its decimal text.
    plan("{ redis: { url: \"redis://h\", key: n, fields: { v: string } } }");
    let compile = |yaml: &str| {
        LookupPlan::compile("pipeline[0].lookup".into(), &step(yaml), &input())
            .unwrap_err()
            .to_string()
    };
    let e = compile("{ redis: { url: \"redis://h\", key: x, fields: { v: string } } }");
    assert!(
        e.starts_with(
            "pipeline[0].lookup.redis.key: the key must be a STRING or BIGINT, \"x\" is Float64"
        ),
        "{e}"
    );
    let e = compile("{ redis: { url: \"redis://h\", key: nope, fields: { v: string } } }");
    assert!(
        e.starts_with("pipeline[0].lookup.redis.key: unknown column 'nope'"),
        "{e}"
    );
    let e = compile("{ redis: { url: \"redis://h\", key: user, fields: { n: bigint } } }");
    assert!(
        e.starts_with(
            "pipeline[0].lookup.redis.fields.n: column \"n\" already exists (columns: user, n, x)"
        ),
        "{e}"
    );
}

#[test]
fn keys_are_distinct_per_chunk() {
    let p = plan(PROFILE);
    let b = batch(vec![Some("a"), Some("b"), None, Some("a")]);
    let keys = p.keys(&b).unwrap();
    assert_eq!(keys.distinct, ["u:a", "u:b"]);
    assert_eq!(keys.rows, [Some(0), Some(1), None, Some(0)]);
    let ints =
        row_keys(&(Arc::new(Int64Array::from(vec![Some(7), None, Some(7), Some(-1)])) as ArrayRef));
    assert_eq!(ints.distinct, ["7", "-1"]);
    assert_eq!(ints.rows, [Some(0), None, Some(0), Some(1)]);
    let dict: DictionaryArray<Int32Type> = vec![Some("k1"), Some("k2"), None, Some("k1")]
        .into_iter()
        .collect();
    let d = row_keys(&(Arc::new(dict) as ArrayRef));
    assert_eq!(d.distinct, ["k1", "k2"]);
    assert_eq!(d.rows, [Some(0), Some(1), None, Some(0)]);
}

#[test]
fn values_are_typed_and_missing_keys_follow_on_missing() {
    let b = batch(vec![Some("a"), Some("b"), None, Some("a")]);
    let found = [
        values(&[Some("Ann"), Some(" 42"), Some("1.5"), Some("TRUE")]),
        None,
    ];
    let p = plan(PROFILE);
    let keys = p.keys(&b).unwrap();
    let out = p.assemble(&b, &keys, &found, false).unwrap();
    assert_eq!((out.skipped_missing, out.skipped_bad), (0, 0));
    let out = out.batch;
    assert_eq!(out.num_rows(), 4);
    let name = out.column(3).as_string::<i32>();
    assert_eq!(
        (0..4)
            .map(|r| name.is_valid(r).then(|| name.value(r)))
            .collect::<Vec<_>>(),
        [Some("Ann"), None, None, Some("Ann")]
    );
    assert_eq!(out.column(4).as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(
        out.column(5)
            .as_primitive::<arrow_array::types::Float64Type>()
            .value(3),
        1.5
    );
    assert!(out.column(6).as_boolean().value(0));
    assert_eq!(out.column(6).null_count(), 2);

    let skip = plan(&PROFILE.replace(" } }", " } }, on_missing: skip"));
    let out = skip.assemble(&b, &keys, &found, false).unwrap();
    assert_eq!(out.skipped_missing, 2, "a missing key and a NULL key");
    assert_eq!(out.batch.num_rows(), 2);
    assert_eq!(out.batch.column(0).as_string::<i32>().value(1), "a");

    let fail = plan(&PROFILE.replace(" } }", " } }, on_missing: fail"));
    let e = fail.assemble(&b, &keys, &found, false).unwrap_err();
    assert_eq!(e, LookupDataError::Missing { key: "u:b".into() });
    assert_eq!(
        e.to_string(),
        "key \"u:b\" is not in the store (on_missing: fail)"
    );
    let only_null = batch(vec![None]);
    let e = fail
        .assemble(&only_null, &fail.keys(&only_null).unwrap(), &[], false)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the key expression \"'u:' || user\" is NULL"),
        "{e}"
    );
}

#[test]
fn a_value_that_is_not_its_type_fails_or_is_skipped() {
    let b = batch(vec![Some("a"), Some("b")]);
    let p = plan(PROFILE);
    let keys = p.keys(&b).unwrap();
    let found = [
        values(&[Some("Ann"), Some("forty"), None, None]),
        values(&[Some("Bob"), Some("7"), Some("x"), Some("0")]),
    ];
    let e = p.assemble(&b, &keys, &found, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "key \"u:a\", field \"age\": \"forty\" is not a bigint"
    );
    // Skipped: every record with a bad value, whatever the field.
    let out = p.assemble(&b, &keys, &found, true).unwrap();
    assert_eq!((out.skipped_bad, out.batch.num_rows()), (2, 0));
    let found = [
        values(&[None, Some("1"), Some("2"), Some("yes")]),
        values(&[None, Some("1"), Some("2"), Some("false")]),
    ];
    let out = p.assemble(&b, &keys, &found, true).unwrap();
    assert_eq!((out.skipped_bad, out.batch.num_rows()), (1, 1));
    assert!(!out.batch.column(6).as_boolean().value(0));
    assert!(out.batch.column(3).is_null(0), "an absent field is NULL");
}

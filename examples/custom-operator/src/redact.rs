//! `redact@1`: masks the characters of a string column after the first
//! `keep`, batch by batch. Dictionary-encoded columns are masked in their
//! dictionary (once per distinct value) and keep their encoding.

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use std::sync::Arc;
use weir_executor::custom::{CustomError, CustomOperator, OperatorConfig};

/// The operator for one step.
#[derive(Debug)]
pub struct Redact {
    column: usize,
    keep: usize,
    mask: char,
    schema: SchemaRef,
}

/// The factory registered as `redact@1`: checks the config against the
/// step's input schema.
pub fn create(
    config: &OperatorConfig,
    input: &SchemaRef,
) -> Result<Box<dyn CustomOperator>, CustomError> {
    for (key, _) in config.iter() {
        if !matches!(key, "column" | "keep" | "mask") {
            return Err(CustomError::new(format!(
                "unknown config.{key}; redact takes column, keep and mask"
            )));
        }
    }
    let name = config.require("column")?;
    let (column, field) = input.column_with_name(name).ok_or_else(|| {
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        CustomError::new(format!(
            "config.column: no column {name:?}; available: {}",
            names.join(", ")
        ))
    })?;
    let string = match field.data_type() {
        DataType::Utf8 => true,
        DataType::Dictionary(k, v) => **k == DataType::Int32 && **v == DataType::Utf8,
        _ => false,
    };
    if !string {
        return Err(CustomError::new(format!(
            "config.column: {name:?} is {}, redact masks string columns",
            field.data_type()
        )));
    }
    let keep = match config.get("keep") {
        None => 0,
        Some(k) => k.parse().map_err(|_| {
            CustomError::new(format!(
                "config.keep: must be a non-negative integer, got {k:?}"
            ))
        })?,
    };
    let mask = match config.get("mask") {
        None => '*',
        Some(m) => {
            let mut chars = m.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => {
                    return Err(CustomError::new(format!(
                        "config.mask: must be one character, got {m:?}"
                    )))
                }
            }
        }
    };
    Ok(Box::new(Redact {
        column,
        keep,
        mask,
        schema: input.clone(),
    }))
}

impl Redact {
    fn mask_strings(&self, values: &StringArray) -> StringArray {
        values
            .iter()
            .map(|v| {
                v.map(|s| {
                    s.chars()
                        .enumerate()
                        .map(|(i, c)| if i < self.keep { c } else { self.mask })
                        .collect::<String>()
                })
            })
            .collect()
    }
}

impl CustomOperator for Redact {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, CustomError> {
        let input = batch.column(self.column);
        let masked: ArrayRef = match input.data_type() {
            DataType::Dictionary(_, _) => {
                let dict = input.as_dictionary::<Int32Type>();
                let values = self.mask_strings(dict.values().as_string::<i32>());
                Arc::new(dict.with_values(Arc::new(values)))
            }
            _ => Arc::new(self.mask_strings(input.as_string::<i32>())),
        };
        let mut columns = batch.columns().to_vec();
        columns[self.column] = masked;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{DictionaryArray, Int64Array};

    fn config(pairs: &[(&str, &str)]) -> OperatorConfig {
        pairs.iter().copied().collect()
    }

    fn batch() -> RecordBatch {
        let users: DictionaryArray<Int32Type> =
            vec![Some("alice"), None, Some("bo"), Some("alice")]
                .into_iter()
                .collect();
        RecordBatch::try_from_iter(vec![
            ("user", Arc::new(users) as ArrayRef),
            (
                "email",
                Arc::new(StringArray::from(vec!["a@x", "b@y", "c@z", "d@w"])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
        let c = b.column_by_name(col).unwrap();
        match c.data_type() {
            DataType::Dictionary(_, _) => {
                let d = c.as_dictionary::<Int32Type>();
                let v = d.values().as_string::<i32>();
                (0..d.len())
                    .map(|i| {
                        d.is_valid(i)
                            .then(|| v.value(d.key(i).unwrap()).to_string())
                    })
                    .collect()
            }
            _ => c
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect(),
        }
    }

    #[test]
    fn masks_after_keep_in_plain_and_dictionary_columns() {
        let b = batch();
        let op = create(&config(&[("column", "user"), ("keep", "2")]), &b.schema()).unwrap();
        let out = op.apply(&b).unwrap();
        assert_eq!(out.schema(), b.schema());
        assert_eq!(
            strings(&out, "user"),
            vec![
                Some("al***".into()),
                None,
                Some("bo".into()),
                Some("al***".into())
            ]
        );
        assert_eq!(strings(&out, "email"), strings(&b, "email"));
        let op = create(&config(&[("column", "email"), ("mask", "#")]), &b.schema()).unwrap();
        assert_eq!(
            strings(&op.apply(&b).unwrap(), "email"),
            vec![Some("###".into()); 4]
        );
    }

    #[test]
    fn bad_configs_are_refused_with_the_key() {
        let s = batch().schema();
        let err = |pairs: &[(&str, &str)]| create(&config(pairs), &s).err().unwrap().0;
        assert_eq!(err(&[]), "config.column is required");
        assert!(err(&[("column", "nope")])
            .starts_with("config.column: no column \"nope\"; available: user, email, n"));
        assert_eq!(
            err(&[("column", "n")]),
            "config.column: \"n\" is Int64, redact masks string columns"
        );
        assert!(err(&[("column", "user"), ("keep", "-1")]).starts_with("config.keep"));
        assert!(err(&[("column", "user"), ("mask", "ab")]).starts_with("config.mask"));
        assert!(err(&[("column", "user"), ("colour", "x")]).starts_with("unknown config.colour"));
    }
}

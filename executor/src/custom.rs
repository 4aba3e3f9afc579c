//! Custom operators: stateless Rust transforms of record batches that a
//! user registers in their own executor binary, and that job specs refer to
//! by name and version (`- custom: { name: redact, version: 1, config: {...} }`).
//!
//! A custom executor binary is the stock executor plus a registry:
//!
//! ```no_run
//! use std::sync::Arc;
//! use arrow_array::RecordBatch;
//! use arrow_schema::SchemaRef;
//! use weir_executor::custom::{CustomError, CustomOperator, OperatorConfig, OperatorRegistry};
//!
//! /// Passes batches through unchanged.
//! struct Identity(SchemaRef);
//!
//! impl CustomOperator for Identity {
//!     fn output_schema(&self) -> SchemaRef {
//!         self.0.clone()
//!     }
//!     fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, CustomError> {
//!         Ok(batch.clone())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut operators = OperatorRegistry::new();
//!     operators
//!         .register("identity", "1", |_config: &OperatorConfig, input: &SchemaRef| {
//!             Ok(Box::new(Identity(input.clone())) as Box<dyn CustomOperator>)
//!         })
//!         .expect("a valid, new name");
//!     weir_executor::main_with(operators)
//! }
//! ```
//!
//! Contract:
//! - An operator is **stateless**: `apply` sees one batch at a time and its
//!   output may depend only on that batch and the step's config. Batches are
//!   replayed after failures, so the same input must give the same output
//!   (exactly-once output relies on it).
//! - The factory runs when a job is deployed on the executor (once per job
//!   and executor, not per batch), with the step's `config:` and the schema
//!   of the batches the step receives; it rejects a bad config or an input
//!   without the columns it needs with a [`CustomError`], which fails the job
//!   with the step's path in the message.
//! - `apply` returns batches of exactly [`CustomOperator::output_schema`].
//!   An error fails the batch (or, under `on_error: skip`, the records that
//!   fail one by one are skipped and counted).
//! - Executors report the registered `name@version` pairs to the leader; a
//!   job using an operator no live executor has is refused at submit, and
//!   executors without it get none of the job's tasks.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_proto::spec::{check_operator_name, check_operator_version, operator_id};

/// A custom operator's error: what is wrong, in words for the job's owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CustomError(pub String);

impl CustomError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CustomError(message.into())
    }
}

impl From<arrow_schema::ArrowError> for CustomError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        CustomError(e.to_string())
    }
}

/// The `config:` map of a custom step: string keys and values (numbers and
/// booleans in the YAML arrive as their text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorConfig {
    values: BTreeMap<String, String>,
}

impl OperatorConfig {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, CustomError> {
        self.get(key)
            .ok_or_else(|| CustomError(format!("config.{key} is required")))
    }

    /// Every key and value, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for OperatorConfig {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        OperatorConfig {
            values: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// One instance of a custom operator in a job: a per-batch transform with
/// a fixed output schema. Shared by the job's tasks, hence `Send + Sync`.
pub trait CustomOperator: Send + Sync {
    /// The schema of every batch [`apply`](Self::apply) returns.
    fn output_schema(&self) -> SchemaRef;

    /// Transforms one batch (of the input schema the factory was given).
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, CustomError>;
}

/// Creates an operator instance from a step's config and input schema.
pub type OperatorFactory = dyn Fn(&OperatorConfig, &SchemaRef) -> Result<Box<dyn CustomOperator>, CustomError>
    + Send
    + Sync;

/// The custom operators of an executor binary, keyed by (name, version).
#[derive(Clone, Default)]
pub struct OperatorRegistry {
    factories: BTreeMap<(String, String), Arc<OperatorFactory>>,
}

impl std::fmt::Debug for OperatorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.operators()).finish()
    }
}

impl OperatorRegistry {
    /// An empty registry (the stock `weir-executor` has no custom operators).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name@version`. Several versions of one name may be
    /// registered side by side (an executor can serve old and new jobs).
    /// Fails on a name or version a spec could not refer to, or on a pair
    /// registered twice.
    pub fn register<F>(
        &mut self,
        name: &str,
        version: &str,
        factory: F,
    ) -> Result<&mut Self, CustomError>
    where
        F: Fn(&OperatorConfig, &SchemaRef) -> Result<Box<dyn CustomOperator>, CustomError>
            + Send
            + Sync
            + 'static,
    {
        check_operator_name(name).map_err(|m| CustomError(format!("operator name {m}")))?;
        check_operator_version(version)
            .map_err(|m| CustomError(format!("operator version {m}")))?;
        let key = (name.to_string(), version.to_string());
        if self.factories.contains_key(&key) {
            return Err(CustomError(format!(
                "operator {} is registered twice",
                operator_id(name, version)
            )));
        }
        self.factories.insert(key, Arc::new(factory));
        Ok(self)
    }

    /// Registered operators as `name@version`, sorted.
    pub fn operators(&self) -> Vec<String> {
        self.factories
            .keys()
            .map(|(n, v)| operator_id(n, v))
            .collect()
    }

    /// Whether `name@version` is registered.
    pub fn contains(&self, name: &str, version: &str) -> bool {
        self.factories
            .contains_key(&(name.to_string(), version.to_string()))
    }

    /// An instance of `name@version` for a step with `config` receiving
    /// batches of `input`.
    pub fn create(
        &self,
        name: &str,
        version: &str,
        config: &OperatorConfig,
        input: &SchemaRef,
    ) -> Result<Box<dyn CustomOperator>, CustomError> {
        let factory = self
            .factories
            .get(&(name.to_string(), version.to_string()))
            .ok_or_else(|| {
                let have = self.operators();
                CustomError(format!(
                    "operator {} is not registered in this executor binary (it has {}); run the job on executors built with it",
                    operator_id(name, version),
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ))
            })?;
        factory(config, input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, Schema};

    struct Pass(SchemaRef);

    impl CustomOperator for Pass {
        fn output_schema(&self) -> SchemaRef {
            self.0.clone()
        }
        fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, CustomError> {
            Ok(batch.clone())
        }
    }

    fn pass(_: &OperatorConfig, s: &SchemaRef) -> Result<Box<dyn CustomOperator>, CustomError> {
        Ok(Box::new(Pass(s.clone())))
    }

    #[test]
    fn registry_is_keyed_by_name_and_version() {
        let mut r = OperatorRegistry::new();
        r.register("pass", "1", pass).unwrap();
        r.register("pass", "2", pass).unwrap();
        assert_eq!(r.operators(), vec!["pass@1", "pass@2"]);
        assert!(r.contains("pass", "2") && !r.contains("pass", "3"));
        let e = r.register("pass", "1", pass).err().unwrap();
        assert_eq!(e.0, "operator pass@1 is registered twice");
        assert!(r.register("pa ss", "1", pass).is_err());
        assert!(r.register("pass", "", pass).is_err());
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let op = r
            .create("pass", "1", &OperatorConfig::default(), &schema)
            .unwrap();
        assert_eq!(op.output_schema(), schema);
        let e = r
            .create("pass", "3", &OperatorConfig::default(), &schema)
            .err()
            .unwrap();
        assert!(
            e.0.starts_with(
                "operator pass@3 is not registered in this executor binary (it has pass@1, pass@2)"
            ),
            "{e}"
        );
    }

    #[test]
    fn config_values_are_looked_up_by_key() {
        let c: OperatorConfig = [("column", "user")].into_iter().collect();
        assert_eq!(c.get("column"), Some("user"));
        assert_eq!(c.require("column").unwrap(), "user");
        assert_eq!(c.require("keep").unwrap_err().0, "config.keep is required");
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![("column", "user")]);
    }
}

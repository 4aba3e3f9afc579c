//! Accumulators of the aggregate functions, stored as fixed `u64` slots so
//! that a group's state is one flat slice (cheap to merge, shuffle and
//! checkpoint).

use arrow_array::builder::{Float64Builder, Int64Builder};
use arrow_array::ArrayRef;
use arrow_schema::DataType;
use std::sync::Arc;
use weir_proto::pb::AggregateFunction;

/// One aggregate function specialised for its input type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccKind {
    /// `count(*)`, or `count(expr)` counting non-null values.
    Count,
    /// Sum of integers.
    SumInt,
    /// Sum of floats.
    SumFloat,
    /// Minimum of integers.
    MinInt,
    /// Minimum of floats.
    MinFloat,
    /// Maximum of integers.
    MaxInt,
    /// Maximum of floats.
    MaxFloat,
    /// Average (of integers or floats).
    Avg,
}

impl AccKind {
    /// The accumulator for `function` over an input of type `input`
    /// (`None` for `count(*)`); `Err` names the problem.
    pub fn for_input(
        function: AggregateFunction,
        input: Option<&DataType>,
    ) -> Result<Self, String> {
        use AggregateFunction as F;
        let numeric = |int: AccKind, float: AccKind| match input {
            Some(DataType::Int64) => Ok(int),
            Some(DataType::Float64) => Ok(float),
            Some(other) => Err(format!(
                "needs a numeric input (BIGINT or DOUBLE), got {other}"
            )),
            None => Err("needs an input expression".to_string()),
        };
        match function {
            F::Count => Ok(AccKind::Count),
            F::Sum => numeric(AccKind::SumInt, AccKind::SumFloat),
            F::Min => numeric(AccKind::MinInt, AccKind::MinFloat),
            F::Max => numeric(AccKind::MaxInt, AccKind::MaxFloat),
            F::Avg => numeric(AccKind::Avg, AccKind::Avg),
        }
    }

    /// Slots this accumulator occupies.
    pub fn slots(self) -> usize {
        match self {
            AccKind::Count | AccKind::SumInt | AccKind::SumFloat => 1,
            _ => 2,
        }
    }

    /// Initial slot values (the first `slots()` are used).
    pub fn init(self) -> [u64; 2] {
        match self {
            AccKind::Count | AccKind::SumInt => [0, 0],
            AccKind::SumFloat | AccKind::Avg => [0f64.to_bits(), 0],
            AccKind::MinInt => [i64::MAX as u64, 0],
            AccKind::MaxInt => [i64::MIN as u64, 0],
            AccKind::MinFloat => [f64::INFINITY.to_bits(), 0],
            AccKind::MaxFloat => [f64::NEG_INFINITY.to_bits(), 0],
        }
    }

    /// Adds one integer input value; true if an integer sum overflowed
    /// BIGINT (the slot then holds the wrapped value: the caller fails the
    /// batch, see [`overflow_error`]).
    #[inline]
    #[must_use]
    pub fn update_int(self, s: &mut [u64], v: i64) -> bool {
        match self {
            AccKind::Count => s[0] = s[0].wrapping_add(1),
            AccKind::SumInt => {
                let (sum, overflowed) = (s[0] as i64).overflowing_add(v);
                s[0] = sum as u64;
                return overflowed;
            }
            AccKind::MinInt => {
                s[0] = (s[0] as i64).min(v) as u64;
                s[1] += 1;
            }
            AccKind::MaxInt => {
                s[0] = (s[0] as i64).max(v) as u64;
                s[1] += 1;
            }
            AccKind::Avg => {
                s[0] = (f64::from_bits(s[0]) + v as f64).to_bits();
                s[1] += 1;
            }
            AccKind::SumFloat | AccKind::MinFloat | AccKind::MaxFloat => {
                return self.update_float(s, v as f64)
            }
        }
        false
    }

    /// Adds one float input value; true if an integer sum overflowed (see
    /// [`update_int`](Self::update_int)).
    #[inline]
    #[must_use]
    pub fn update_float(self, s: &mut [u64], v: f64) -> bool {
        match self {
            AccKind::Count => s[0] = s[0].wrapping_add(1),
            AccKind::SumFloat => s[0] = (f64::from_bits(s[0]) + v).to_bits(),
            AccKind::MinFloat => {
                s[0] = f64::from_bits(s[0]).min(v).to_bits();
                s[1] += 1;
            }
            AccKind::MaxFloat => {
                s[0] = f64::from_bits(s[0]).max(v).to_bits();
                s[1] += 1;
            }
            AccKind::Avg => {
                s[0] = (f64::from_bits(s[0]) + v).to_bits();
                s[1] += 1;
            }
            AccKind::SumInt | AccKind::MinInt | AccKind::MaxInt => {
                return self.update_int(s, v as i64)
            }
        }
        false
    }

    /// Merges the partial state `src` into `dst`; true if an integer sum
    /// overflowed (see [`update_int`](Self::update_int)).
    #[inline]
    #[must_use]
    pub fn merge(self, dst: &mut [u64], src: &[u64]) -> bool {
        match self {
            AccKind::Count => dst[0] = (dst[0] as i64).wrapping_add(src[0] as i64) as u64,
            AccKind::SumInt => {
                let (sum, overflowed) = (dst[0] as i64).overflowing_add(src[0] as i64);
                dst[0] = sum as u64;
                return overflowed;
            }
            AccKind::SumFloat => {
                dst[0] = (f64::from_bits(dst[0]) + f64::from_bits(src[0])).to_bits()
            }
            AccKind::MinInt => {
                dst[0] = (dst[0] as i64).min(src[0] as i64) as u64;
                dst[1] += src[1];
            }
            AccKind::MaxInt => {
                dst[0] = (dst[0] as i64).max(src[0] as i64) as u64;
                dst[1] += src[1];
            }
            AccKind::MinFloat => {
                dst[0] = f64::from_bits(dst[0]).min(f64::from_bits(src[0])).to_bits();
                dst[1] += src[1];
            }
            AccKind::MaxFloat => {
                dst[0] = f64::from_bits(dst[0]).max(f64::from_bits(src[0])).to_bits();
                dst[1] += src[1];
            }
            AccKind::Avg => {
                dst[0] = (f64::from_bits(dst[0]) + f64::from_bits(src[0])).to_bits();
                dst[1] += src[1];
            }
        }
        false
    }

    /// Output type of the final value.
    pub fn output_type(self) -> DataType {
        match self {
            AccKind::Count | AccKind::SumInt | AccKind::MinInt | AccKind::MaxInt => DataType::Int64,
            _ => DataType::Float64,
        }
    }
}

/// Builds the output column of one accumulator.
pub enum OutputBuilder {
    /// Integer outputs.
    Int(AccKind, Int64Builder),
    /// Float outputs.
    Float(AccKind, Float64Builder),
}

impl OutputBuilder {
    /// A builder for `kind`.
    pub fn new(kind: AccKind, capacity: usize) -> Self {
        match kind.output_type() {
            DataType::Int64 => OutputBuilder::Int(kind, Int64Builder::with_capacity(capacity)),
            _ => OutputBuilder::Float(kind, Float64Builder::with_capacity(capacity)),
        }
    }

    /// Appends the final value of the slots `s`.
    pub fn append(&mut self, s: &[u64]) {
        match self {
            OutputBuilder::Int(AccKind::Count | AccKind::SumInt, b) => b.append_value(s[0] as i64),
            OutputBuilder::Int(_, b) => b.append_option((s[1] > 0).then_some(s[0] as i64)),
            OutputBuilder::Float(AccKind::SumFloat, b) => b.append_value(f64::from_bits(s[0])),
            OutputBuilder::Float(AccKind::Avg, b) => {
                b.append_option((s[1] > 0).then(|| f64::from_bits(s[0]) / s[1] as f64))
            }
            OutputBuilder::Float(_, b) => b.append_option((s[1] > 0).then(|| f64::from_bits(s[0]))),
        }
    }

    /// The finished column.
    pub fn finish(self) -> ArrayRef {
        match self {
            OutputBuilder::Int(_, mut b) => Arc::new(b.finish()),
            OutputBuilder::Float(_, mut b) => Arc::new(b.finish()),
        }
    }
}

/// The error of a batch in which the integer sum `aggregate` overflowed
/// BIGINT. Weir never wraps a sum silently (as a BIGINT sum in Flink or in
/// Spark without ANSI mode would): the batch fails as the data's fault,
/// whatever `on_error` says, since no single record is to blame.
pub fn overflow_error(aggregate: &str) -> crate::expr::ExprError {
    crate::expr::ExprError::Overflow {
        aggregate: aggregate.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};

    fn run(kind: AccKind, parts: &[&[i64]]) -> Vec<[u64; 2]> {
        parts
            .iter()
            .map(|vals| {
                let mut s = kind.init();
                for v in *vals {
                    assert!(!kind.update_int(&mut s, *v));
                }
                s
            })
            .collect()
    }

    #[test]
    fn partial_states_merge_to_the_whole() {
        for kind in [
            AccKind::Count,
            AccKind::SumInt,
            AccKind::MinInt,
            AccKind::MaxInt,
            AccKind::Avg,
        ] {
            let parts = run(kind, &[&[3, -1], &[7], &[]]);
            let whole = run(kind, &[&[3, -1, 7]])[0];
            let mut merged = kind.init();
            for p in &parts {
                assert!(!kind.merge(&mut merged, p));
            }
            assert_eq!(merged, whole, "{kind:?}");
        }
    }

    #[test]
    fn final_values() {
        let out = |kind: AccKind, vals: &[i64]| {
            let s = run(kind, &[vals])[0];
            let mut b = OutputBuilder::new(kind, 1);
            b.append(&s);
            b.finish()
        };
        assert_eq!(
            out(AccKind::Count, &[5, 6])
                .as_primitive::<Int64Type>()
                .value(0),
            2
        );
        assert_eq!(
            out(AccKind::SumInt, &[5, 6])
                .as_primitive::<Int64Type>()
                .value(0),
            11
        );
        assert_eq!(
            out(AccKind::MinInt, &[5, 6])
                .as_primitive::<Int64Type>()
                .value(0),
            5
        );
        assert_eq!(
            out(AccKind::MaxInt, &[5, 6])
                .as_primitive::<Int64Type>()
                .value(0),
            6
        );
        assert_eq!(
            out(AccKind::Avg, &[5, 6])
                .as_primitive::<Float64Type>()
                .value(0),
            5.5
        );
        assert!(out(AccKind::MinInt, &[]).is_null(0));
        assert!(out(AccKind::Avg, &[]).is_null(0));
    }

    #[test]
    fn float_accumulators() {
        let mut s = AccKind::MaxFloat.init();
        assert!(!AccKind::MaxFloat.update_float(&mut s, -2.5));
        assert!(!AccKind::MaxFloat.update_float(&mut s, 1.5));
        assert_eq!(f64::from_bits(s[0]), 1.5);
        assert_eq!(
            AccKind::for_input(AggregateFunction::Sum, Some(&DataType::Utf8)).unwrap_err(),
            "needs a numeric input (BIGINT or DOUBLE), got Utf8"
        );
    }

    /// An integer sum past BIGINT says so, adding one value or merging two
    /// partial sums; the other accumulators never do.
    #[test]
    fn integer_sums_report_overflow() {
        let mut s = AccKind::SumInt.init();
        assert!(!AccKind::SumInt.update_int(&mut s, i64::MAX));
        assert!(AccKind::SumInt.update_int(&mut s, 1));
        let (mut a, mut b) = (AccKind::SumInt.init(), AccKind::SumInt.init());
        assert!(!AccKind::SumInt.update_int(&mut a, i64::MIN));
        assert!(!AccKind::SumInt.update_int(&mut b, -1));
        assert!(AccKind::SumInt.merge(&mut a, &b));
        for kind in [
            AccKind::Count,
            AccKind::MinInt,
            AccKind::MaxInt,
            AccKind::Avg,
        ] {
            let mut s = kind.init();
            for v in [i64::MAX, i64::MAX, i64::MIN] {
                assert!(!kind.update_int(&mut s, v), "{kind:?}");
            }
            let copy = s;
            assert!(!kind.merge(&mut s, &copy), "{kind:?}");
        }
    }
}

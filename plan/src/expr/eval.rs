//! Vectorized evaluation of the physical tree with Arrow kernels.

use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_arith::numeric;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Datum, DictionaryArray, Float64Array,
    Int32Array, Int64Array, Scalar, StringArray, UInt32Array,
};
use arrow_buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow_ord::cmp;
use arrow_schema::{ArrowError, DataType};
use arrow_select::concat::concat;
use arrow_select::filter::filter;
use arrow_select::nullif::nullif;
use arrow_select::take::take;
use arrow_select::zip::zip;
use arrow_string::like;

use super::types::{ArithOp, CmpOp, Kind, Phys};
use super::{functions, library};

/// The columns of the batch being evaluated.
#[derive(Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) columns: &'a [ArrayRef],
    pub(crate) num_rows: usize,
    /// The columns the expression reads: the only ones a short-circuit
    /// copies the selected rows of.
    pub(crate) used: &'a [usize],
    /// Whether guards (`CASE`, `AND`, `OR`, `coalesce`) evaluate each
    /// operand on only the rows that need it. They first evaluate every
    /// operand on every row, which is faster, and only if that fails
    /// evaluate again this way: then an operand fails only for a row that
    /// needs it.
    pub(crate) lazy: bool,
}

/// Result of evaluating a node: a full column or a one-element scalar.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Value {
    /// The underlying array (one element for scalars).
    pub(crate) fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) | Value::Scalar(a) => a,
        }
    }

    pub(crate) fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// Expands to a column of `len` rows.
    pub(crate) fn into_array(self, len: usize) -> Result<ArrayRef, ArrowError> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(a) => {
                if a.is_null(0) {
                    Ok(new_null_array(a.data_type(), len))
                } else {
                    let zeros = UInt32Array::new(ScalarBuffer::from(vec![0u32; len]), None);
                    take(a.as_ref(), &zeros, None)
                }
            }
        }
    }

    /// Applies a kernel to the underlying array, keeping scalar-ness.
    pub(crate) fn map(
        &self,
        f: impl FnOnce(&ArrayRef) -> Result<ArrayRef, ArrowError>,
    ) -> Result<Value, ArrowError> {
        Ok(match self {
            Value::Array(a) => Value::Array(f(a)?),
            Value::Scalar(a) => Value::Scalar(f(a)?),
        })
    }
}

/// Calls a binary Datum kernel; the result is scalar only if both inputs are.
fn datum2(
    l: &Value,
    r: &Value,
    f: impl FnOnce(&dyn Datum, &dyn Datum) -> Result<ArrayRef, ArrowError>,
) -> Result<Value, ArrowError> {
    let (ls, rs);
    let ld: &dyn Datum = match l {
        Value::Array(a) => a,
        Value::Scalar(a) => {
            ls = Scalar::new(Arc::clone(a));
            &ls
        }
    };
    let rd: &dyn Datum = match r {
        Value::Array(a) => a,
        Value::Scalar(a) => {
            rs = Scalar::new(Arc::clone(a));
            &rs
        }
    };
    let out = f(ld, rd)?;
    Ok(if l.is_scalar() && r.is_scalar() {
        Value::Scalar(out)
    } else {
        Value::Array(out)
    })
}

/// Adapts a Datum kernel returning a `BooleanArray`.
fn boolean_kernel(
    k: fn(&dyn Datum, &dyn Datum) -> Result<BooleanArray, ArrowError>,
) -> impl FnOnce(&dyn Datum, &dyn Datum) -> Result<ArrayRef, ArrowError> {
    move |a, b| Ok(Arc::new(k(a, b)?) as ArrayRef)
}

/// Human-readable message of an evaluation error.
pub(crate) fn message(e: ArrowError) -> String {
    match e {
        ArrowError::ComputeError(m)
        | ArrowError::ArithmeticOverflow(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::CastError(m) => m,
        other => other.to_string(),
    }
}

fn as_bool(v: &ArrayRef) -> Result<&BooleanArray, ArrowError> {
    v.as_boolean_opt()
        .ok_or_else(|| ArrowError::ComputeError(format!("expected Boolean, got {}", v.data_type())))
}

/// Converts a condition into a selection mask where NULL means false.
fn mask(v: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    let b = as_bool(v)?;
    Ok(match b.nulls() {
        Some(n) if n.null_count() > 0 => BooleanArray::new(b.values() & n.inner(), None),
        _ => b.clone(),
    })
}

fn zero_of(t: &DataType) -> Result<ArrayRef, ArrowError> {
    match t {
        DataType::Int64 => Ok(Arc::new(Int64Array::from(vec![0i64]))),
        DataType::Float64 => Ok(Arc::new(Float64Array::from(vec![0f64]))),
        other => Err(ArrowError::ComputeError(format!(
            "arithmetic on non-numeric type {other}"
        ))),
    }
}

impl Phys {
    /// Evaluates this node for the rows `rows` selects (no NULLs in
    /// `rows`): the other rows of the result hold no meaningful value and
    /// must not be used. Lazily (see `Input::lazy`), the rows not selected
    /// are not evaluated, so they cannot fail; otherwise every row is.
    fn eval_rows(&self, input: &Input<'_>, rows: &BooleanArray) -> Result<Value, ArrowError> {
        let selected = rows.true_count();
        if !input.lazy || selected == input.num_rows {
            return self.eval(input);
        }
        if selected == 0 {
            return Ok(Value::Scalar(new_null_array(&self.data_type, 1)));
        }
        let mut columns = input.columns.to_vec();
        for &i in input.used {
            if let Some(c) = columns.get_mut(i) {
                *c = filter(c.as_ref(), rows)?;
            }
        }
        let subset = Input {
            columns: &columns,
            num_rows: selected,
            ..*input
        };
        let value = self.eval(&subset)?;
        if value.is_scalar() {
            return Ok(value);
        }
        // Row i of the result is row k of the subset's, NULL if not selected.
        let mut k = 0u32;
        let positions: UInt32Array = rows
            .values()
            .iter()
            .map(|selected| {
                selected.then(|| {
                    k += 1;
                    k - 1
                })
            })
            .collect();
        Ok(Value::Array(take(
            value.array().as_ref(),
            &positions,
            None,
        )?))
    }

    /// Evaluates this node over `input`.
    pub(crate) fn eval(&self, input: &Input<'_>) -> Result<Value, ArrowError> {
        let guard = matches!(
            self.kind,
            Kind::And(..) | Kind::Or(..) | Kind::Case { .. } | Kind::Coalesce(_)
        );
        if guard && !input.lazy {
            // Every operand on every row first (see `Input::lazy`); the
            // cost of a failure is one more, lazy, evaluation of this node.
            if let Ok(v) = self.eval_node(input) {
                return Ok(v);
            }
            return self.eval_node(&Input {
                lazy: true,
                ..*input
            });
        }
        self.eval_node(input)
    }

    fn eval_node(&self, input: &Input<'_>) -> Result<Value, ArrowError> {
        match &self.kind {
            Kind::Column(i) => input
                .columns
                .get(*i)
                .map(|c| Value::Array(Arc::clone(c)))
                .ok_or_else(|| ArrowError::ComputeError(format!("column {i} is missing"))),
            Kind::Literal(a) => Ok(Value::Scalar(Arc::clone(a))),
            Kind::Arith {
                op,
                left,
                right,
                text,
            } => {
                let l = left.eval(input)?;
                let mut r = right.eval(input)?;
                if matches!(op, ArithOp::Div | ArithOp::Rem) {
                    // Spark semantics: x / 0 and x % 0 are NULL.
                    let zero = Scalar::new(zero_of(r.array().data_type())?);
                    let mut is_zero = cmp::eq(r.array(), &zero)?;
                    if r.array().data_type() == &DataType::Float64 {
                        // Arrow compares floats by total order, where -0.0 != 0.0.
                        let neg_zero = Scalar::new(Float64Array::from(vec![-0.0f64]));
                        is_zero = or_kleene(&is_zero, &cmp::eq(r.array(), &neg_zero)?)?;
                    }
                    if is_zero.true_count() > 0 {
                        r = r.map(|a| nullif(a.as_ref(), &is_zero))?;
                    }
                }
                let kernel = match op {
                    ArithOp::Add => numeric::add,
                    ArithOp::Sub => numeric::sub,
                    ArithOp::Mul => numeric::mul,
                    ArithOp::Div => numeric::div,
                    ArithOp::Rem => numeric::rem,
                };
                datum2(&l, &r, kernel).map_err(|e| match e {
                    ArrowError::ArithmeticOverflow(_) => {
                        ArrowError::ArithmeticOverflow(format!("integer overflow in `{text}`"))
                    }
                    other => other,
                })
            }
            Kind::Cmp { op, left, right } => {
                let l = left.eval(input)?;
                let r = right.eval(input)?;
                let kernel = match op {
                    CmpOp::Eq => cmp::eq,
                    CmpOp::NotEq => cmp::neq,
                    CmpOp::Lt => cmp::lt,
                    CmpOp::LtEq => cmp::lt_eq,
                    CmpOp::Gt => cmp::gt,
                    CmpOp::GtEq => cmp::gt_eq,
                };
                datum2(&l, &r, boolean_kernel(kernel))
            }
            Kind::And(left, right) | Kind::Or(left, right) => {
                let and = matches!(self.kind, Kind::And(..));
                let l = left.eval(input)?;
                // The right side only where the left does not decide: a
                // guard such as `d <> 0 AND n / d > 1` never fails.
                let r = match &l {
                    Value::Scalar(c) => {
                        let c = as_bool(c)?;
                        if c.is_valid(0) && c.value(0) != and {
                            Value::Scalar(Arc::clone(l.array()))
                        } else {
                            right.eval(input)?
                        }
                    }
                    Value::Array(_) if !input.lazy => right.eval(input)?,
                    Value::Array(a) => {
                        let decided = mask(
                            &(Arc::new(if and {
                                not(as_bool(a)?)?
                            } else {
                                as_bool(a)?.clone()
                            }) as ArrayRef),
                        )?;
                        right.eval_rows(input, &not(&decided)?)?
                    }
                };
                let both_scalar = l.is_scalar() && r.is_scalar();
                let (l, r) = if both_scalar {
                    (Arc::clone(l.array()), Arc::clone(r.array()))
                } else {
                    (l.into_array(input.num_rows)?, r.into_array(input.num_rows)?)
                };
                let out = if and {
                    and_kleene(as_bool(&l)?, as_bool(&r)?)?
                } else {
                    or_kleene(as_bool(&l)?, as_bool(&r)?)?
                };
                let out: ArrayRef = Arc::new(out);
                Ok(if both_scalar {
                    Value::Scalar(out)
                } else {
                    Value::Array(out)
                })
            }
            Kind::Not(e) => e
                .eval(input)?
                .map(|a| Ok(Arc::new(not(as_bool(a)?)?) as ArrayRef)),
            Kind::Neg { expr, text } => expr.eval(input)?.map(|a| {
                numeric::neg(a.as_ref()).map_err(|e| match e {
                    ArrowError::ArithmeticOverflow(_) => {
                        ArrowError::ArithmeticOverflow(format!("integer overflow in `{text}`"))
                    }
                    other => other,
                })
            }),
            Kind::IsNull { expr, negated } => expr.eval(input)?.map(|a| {
                let out = if *negated {
                    is_not_null(a.as_ref())?
                } else {
                    is_null(a.as_ref())?
                };
                Ok(Arc::new(out) as ArrayRef)
            }),
            Kind::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => {
                let e = expr.eval(input)?;
                let p = pattern.eval(input)?;
                let kernel = match (negated, case_insensitive) {
                    (false, false) => like::like,
                    (true, false) => like::nlike,
                    (false, true) => like::ilike,
                    (true, true) => like::nilike,
                };
                datum2(&e, &p, boolean_kernel(kernel))
            }
            Kind::Case { whens, else_result } if !input.lazy => {
                let mut acc = else_result.eval(input)?;
                for (cond, result) in whens.iter().rev() {
                    let c = cond.eval(input)?;
                    let v = result.eval(input)?;
                    acc = select(&c, v, acc, input.num_rows)?;
                }
                Ok(acc)
            }
            Kind::Case { whens, else_result } => {
                // Each condition on the rows no earlier one took, each
                // result on the rows that take it: a branch a row does not
                // take is never evaluated for it.
                let mut open = BooleanArray::from(vec![true; input.num_rows]);
                let mut taken = Vec::with_capacity(whens.len());
                for (cond, result) in whens {
                    let c = cond.eval_rows(input, &open)?;
                    let takes =
                        arrow_arith::boolean::and(&open, &mask(&c.into_array(input.num_rows)?)?)?;
                    let v = result.eval_rows(input, &takes)?;
                    open = arrow_arith::boolean::and(&open, &not(&takes)?)?;
                    taken.push((takes, v));
                }
                let mut acc = else_result.eval_rows(input, &open)?;
                for (takes, v) in taken.into_iter().rev() {
                    let takes = Value::Array(Arc::new(takes));
                    acc = select(&takes, v, acc, input.num_rows)?;
                }
                Ok(acc)
            }
            Kind::Coalesce(args) => {
                // Lazily, each argument only where the ones before it are
                // NULL.
                let mut values = Vec::with_capacity(args.len());
                let mut open = BooleanArray::from(vec![true; input.num_rows]);
                for a in args {
                    let v = a.eval_rows(input, &open)?;
                    if input.lazy {
                        let missing = is_null(v.clone().into_array(input.num_rows)?.as_ref())?;
                        open = arrow_arith::boolean::and(&open, &missing)?;
                    }
                    values.push(v);
                }
                let mut iter = values.into_iter().rev();
                let Some(mut acc) = iter.next() else {
                    return Ok(Value::Scalar(new_null_array(&self.data_type, 1)));
                };
                for v in iter {
                    let present = v.map(|a| Ok(Arc::new(is_not_null(a.as_ref())?) as ArrayRef))?;
                    acc = select(&present, v, acc, input.num_rows)?;
                }
                Ok(acc)
            }
            Kind::Cast(e) => {
                let to = &self.data_type;
                e.eval(input)?.map(|a| functions::cast(a, to))
            }
            Kind::Unpack(e) => e.eval(input)?.map(unpack),
            Kind::DictMap {
                column,
                inner,
                text,
            } => dict_map(input, *column, inner, text).map(Value::Array),
            Kind::Func { func, args, text } => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(a.eval(input)?);
                }
                functions::call(*func, &values, text)
            }
            Kind::JsonPath { path, arg } => arg.eval(input)?.map(|a| {
                let out: StringArray = a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.and_then(|t| path.extract(t)))
                    .collect();
                Ok(Arc::new(out) as ArrayRef)
            }),
            Kind::Regex {
                func,
                regex,
                args,
                text,
            } => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(a.eval(input)?);
                }
                let all_scalar = values.iter().all(Value::is_scalar);
                let len = if all_scalar { 1 } else { input.num_rows };
                let out = library::call_regex(*func, regex, &values, len, text)?;
                Ok(if all_scalar {
                    Value::Scalar(out)
                } else {
                    Value::Array(out)
                })
            }
        }
    }
}

/// `CASE`-style selection: rows where `cond` is true take `then`, the others
/// `otherwise`.
fn select(cond: &Value, then: Value, otherwise: Value, len: usize) -> Result<Value, ArrowError> {
    if let Value::Scalar(c) = cond {
        let take_then = as_bool(c)?.is_valid(0) && as_bool(c)?.value(0);
        return Ok(if take_then { then } else { otherwise });
    }
    let m = mask(cond.array())?;
    if m.len() != len {
        return Err(ArrowError::ComputeError(format!(
            "condition has {} rows, expected {len}",
            m.len()
        )));
    }
    let (ts, fs);
    let t: &dyn Datum = match &then {
        Value::Array(a) => a,
        Value::Scalar(a) => {
            ts = Scalar::new(Arc::clone(a));
            &ts
        }
    };
    let f: &dyn Datum = match &otherwise {
        Value::Array(a) => a,
        Value::Scalar(a) => {
            fs = Scalar::new(Arc::clone(a));
            &fs
        }
    };
    Ok(Value::Array(zip(&m, t, f)?))
}

/// Dictionary to plain strings: `take(values, keys)`.
fn unpack(a: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match a.as_any_dictionary_opt() {
        Some(d) => take(d.values().as_ref(), d.keys(), None),
        None => Ok(Arc::clone(a)),
    }
}

/// Evaluates `inner` over the distinct values of a dictionary column and maps
/// the result back through the keys.
fn dict_map(
    input: &Input<'_>,
    column: usize,
    inner: &Phys,
    text: &str,
) -> Result<ArrayRef, ArrowError> {
    let col = input
        .columns
        .get(column)
        .ok_or_else(|| ArrowError::ComputeError(format!("column {column} is missing")))?;
    let dict = col.as_dictionary_opt::<Int32Type>().ok_or_else(|| {
        ArrowError::ComputeError(format!(
            "column '{text}' is {}, expected Dictionary(Int32, Utf8)",
            col.data_type()
        ))
    })?;
    let keys = dict.keys();
    let mut values = Arc::clone(dict.values());
    // Null keys: evaluate the expression on an extra NULL value too, so that
    // e.g. `coalesce(k, 'none')` and `k IS NULL` are right for them.
    let keys: Int32Array = if keys.null_count() > 0 {
        let extra = i32::try_from(values.len())
            .map_err(|_| ArrowError::ComputeError("dictionary has too many values".to_string()))?;
        values = concat(&[
            values.as_ref(),
            new_null_array(values.data_type(), 1).as_ref(),
        ])?;
        let fixed: ScalarBuffer<i32> = keys
            .values()
            .iter()
            .enumerate()
            .map(|(i, k)| if keys.is_valid(i) { *k } else { extra })
            .collect();
        Int32Array::new(fixed, None)
    } else {
        keys.clone()
    };
    let mut columns = input.columns.to_vec();
    columns[column] = Arc::clone(&values);
    let value_input = Input {
        columns: &columns,
        num_rows: values.len(),
        // The inner expression reads only the dictionary's values.
        used: std::slice::from_ref(&column),
        lazy: input.lazy,
    };
    let out = inner.eval(&value_input)?.into_array(values.len())?;
    if out.data_type() == &DataType::Utf8 {
        // Keep the result dictionary-encoded; NULL results become null keys.
        let nulls = (out.null_count() > 0).then(|| {
            NullBuffer::new(BooleanBuffer::collect_bool(keys.len(), |i| {
                out.is_valid(keys.value(i) as usize)
            }))
        });
        let keys = Int32Array::new(keys.values().clone(), nulls);
        Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(keys, out)?))
    } else {
        take(out.as_ref(), &keys, None)
    }
}

//! Scalar functions and casts, implemented as whole-array kernels.

use std::fmt::Write;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray,
};
use arrow_buffer::Buffer;
use arrow_schema::{ArrowError, DataType};

use super::eval::Value;
use super::types::Func;

fn string_arg<'a>(v: &'a ArrayRef, name: &str) -> Result<&'a StringArray, ArrowError> {
    v.as_string_opt::<i32>().ok_or_else(|| {
        ArrowError::ComputeError(format!("{name} expects Utf8, got {}", v.data_type()))
    })
}

fn int_arg<'a>(v: &'a ArrayRef, name: &str) -> Result<&'a Int64Array, ArrowError> {
    v.as_primitive_opt::<Int64Type>().ok_or_else(|| {
        ArrowError::ComputeError(format!("{name} expects Int64, got {}", v.data_type()))
    })
}

/// Calls a scalar function. The result is a scalar if all arguments are.
pub(crate) fn call(func: Func, args: &[Value], text: &str) -> Result<Value, ArrowError> {
    let all_scalar = args.iter().all(Value::is_scalar);
    // Number of rows: that of any array argument (all have the batch length).
    let len = args
        .iter()
        .find(|a| !a.is_scalar())
        .map(|a| a.array().len())
        .unwrap_or(1);
    let first = args
        .first()
        .ok_or_else(|| ArrowError::ComputeError(format!("{text}: missing argument")))?;
    let out: ArrayRef = match func {
        Func::Lower => return first.map(|a| map_case(string_arg(a, "lower")?, false)),
        Func::Upper => return first.map(|a| map_case(string_arg(a, "upper")?, true)),
        Func::Length => return first.map(|a| char_length(string_arg(a, "length")?)),
        Func::Abs => return first.map(|a| abs(a, text)),
        Func::Concat => {
            let strings = args
                .iter()
                .map(|v| Ok((string_arg(v.array(), "concat")?, v.is_scalar())))
                .collect::<Result<Vec<_>, ArrowError>>()?;
            concat_strings(&strings, len)
        }
        Func::Substr => {
            let s = (string_arg(first.array(), "substr")?, first.is_scalar());
            let start = match args.get(1) {
                Some(v) => (int_arg(v.array(), "substr")?, v.is_scalar()),
                None => return Err(ArrowError::ComputeError("substr: missing start".into())),
            };
            let count = match args.get(2) {
                Some(v) => Some((int_arg(v.array(), "substr")?, v.is_scalar())),
                None => None,
            };
            substr(s, start, count, len)
        }
        library => super::library::call(library, args, len, text)?,
    };
    Ok(if all_scalar {
        Value::Scalar(out)
    } else {
        Value::Array(out)
    })
}

/// Row index into an argument that may be a one-element scalar.
#[inline]
fn idx(scalar: bool, i: usize) -> usize {
    if scalar {
        0
    } else {
        i
    }
}

/// `lower` / `upper`. ASCII data is converted in one pass over the value
/// buffer, reusing offsets and validity.
fn map_case(s: &StringArray, upper: bool) -> Result<ArrayRef, ArrowError> {
    if s.is_ascii() {
        let bytes: Vec<u8> = if upper {
            s.values().iter().map(u8::to_ascii_uppercase).collect()
        } else {
            s.values().iter().map(u8::to_ascii_lowercase).collect()
        };
        let out = StringArray::try_new(
            s.offsets().clone(),
            Buffer::from_vec(bytes),
            s.nulls().cloned(),
        )?;
        return Ok(Arc::new(out));
    }
    let mut b = StringBuilder::with_capacity(s.len(), s.values().len());
    for v in s.iter() {
        match v {
            Some(v) if upper => b.append_value(v.to_uppercase()),
            Some(v) => b.append_value(v.to_lowercase()),
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `length`: number of characters, as Int64.
fn char_length(s: &StringArray) -> Result<ArrayRef, ArrowError> {
    if s.is_ascii() {
        let bytes = arrow_string::length::length(s)?;
        let bytes = bytes.as_primitive_opt::<Int32Type>().ok_or_else(|| {
            ArrowError::ComputeError("length kernel returned an unexpected type".into())
        })?;
        let out: Int64Array = bytes.unary(i64::from);
        return Ok(Arc::new(out));
    }
    let out: Int64Array = s
        .iter()
        .map(|v| v.map(|v| v.chars().count() as i64))
        .collect();
    Ok(Arc::new(out))
}

fn abs(a: &ArrayRef, text: &str) -> Result<ArrayRef, ArrowError> {
    if let Some(i) = a.as_primitive_opt::<Int64Type>() {
        let out: Int64Array = i.try_unary(|v| {
            v.checked_abs().ok_or_else(|| {
                ArrowError::ArithmeticOverflow(format!("integer overflow in `{text}`"))
            })
        })?;
        return Ok(Arc::new(out));
    }
    if let Some(f) = a.as_primitive_opt::<Float64Type>() {
        let out: Float64Array = f.unary(f64::abs);
        return Ok(Arc::new(out));
    }
    Err(ArrowError::ComputeError(format!(
        "abs expects a number, got {}",
        a.data_type()
    )))
}

/// `concat(a, b, ...)`: NULL if any argument is NULL.
fn concat_strings(args: &[(&StringArray, bool)], len: usize) -> ArrayRef {
    let capacity: usize = args
        .iter()
        .map(|(a, scalar)| {
            if *scalar {
                a.values().len().saturating_mul(len)
            } else {
                a.values().len()
            }
        })
        .sum();
    let mut b = StringBuilder::with_capacity(len, capacity);
    for i in 0..len {
        if args.iter().any(|(a, s)| a.is_null(idx(*s, i))) {
            b.append_null();
            continue;
        }
        for (a, s) in args {
            b.write_str(a.value(idx(*s, i))).ok();
        }
        b.append_value("");
    }
    Arc::new(b.finish())
}

/// SQL `substr(s, pos[, len])` with Spark semantics: 1-based `pos`, 0 is
/// treated as 1, negative `pos` counts from the end; `len < 1` gives ''.
fn substr_one(s: &str, pos: i64, count: Option<i64>) -> &str {
    let n = s.chars().count() as i64;
    let start = if pos > 0 {
        pos - 1
    } else if pos < 0 {
        n.saturating_add(pos)
    } else {
        0
    };
    let end = match count {
        Some(c) => start.saturating_add(c),
        None => n,
    };
    let start = start.max(0);
    let end = end.min(n);
    if start >= end {
        return "";
    }
    let mut indices = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()));
    let b0 = indices.nth(start as usize).unwrap_or(s.len());
    let b1 = indices.nth((end - start - 1) as usize).unwrap_or(s.len());
    &s[b0..b1]
}

fn substr(
    s: (&StringArray, bool),
    start: (&Int64Array, bool),
    count: Option<(&Int64Array, bool)>,
    len: usize,
) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(len, s.0.values().len());
    for i in 0..len {
        let (si, pi) = (idx(s.1, i), idx(start.1, i));
        if s.0.is_null(si) || start.0.is_null(pi) {
            b.append_null();
            continue;
        }
        let c = match count {
            Some((c, scalar)) => {
                let ci = idx(scalar, i);
                if c.is_null(ci) {
                    b.append_null();
                    continue;
                }
                Some(c.value(ci))
            }
            None => None,
        };
        b.append_value(substr_one(s.0.value(si), start.0.value(pi), c));
    }
    Arc::new(b.finish())
}

/// Spark-style rendering of a double.
fn format_f64(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == v.trunc() && v.abs() < 1e7 {
        let _ = write!(out, "{v:.1}");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// `v` truncated to an i64, if it fits.
pub(crate) fn f64_to_i64(v: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, which is out of range.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0; // exactly 2^63
    (v.is_finite() && (-TWO_POW_63..TWO_POW_63).contains(&v)).then(|| v.trunc() as i64)
}

fn parse_i64(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
}

/// Casts between the supported types. Failed conversions produce NULL.
pub(crate) fn cast(a: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let from = a.data_type();
    if from == to {
        return Ok(Arc::clone(a));
    }
    if from == &DataType::Null {
        return Ok(new_null_array(to, a.len()));
    }
    let unsupported = || ArrowError::CastError(format!("cannot cast {from} to {to}"));
    let out: ArrayRef = match (from, to) {
        (DataType::Int64, DataType::Float64) => {
            let out: Float64Array = a.as_primitive::<Int64Type>().unary(|v| v as f64);
            Arc::new(out)
        }
        (DataType::Float64, DataType::Int64) => {
            let f = a.as_primitive::<Float64Type>();
            let out: Int64Array = f.iter().map(|v| v.and_then(f64_to_i64)).collect();
            Arc::new(out)
        }
        (DataType::Boolean, DataType::Int64) => {
            let out: Int64Array = a.as_boolean().iter().map(|v| v.map(i64::from)).collect();
            Arc::new(out)
        }
        (DataType::Boolean, DataType::Float64) => {
            let out: Float64Array = a
                .as_boolean()
                .iter()
                .map(|v| v.map(|b| if b { 1.0 } else { 0.0 }))
                .collect();
            Arc::new(out)
        }
        (DataType::Int64, DataType::Boolean) => {
            let out: BooleanArray = a
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| v != 0))
                .collect();
            Arc::new(out)
        }
        (DataType::Float64, DataType::Boolean) => {
            let out: BooleanArray = a
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(|v| v != 0.0))
                .collect();
            Arc::new(out)
        }
        (DataType::Int64, DataType::Utf8) => {
            let mut b = StringBuilder::with_capacity(a.len(), a.len() * 8);
            for v in a.as_primitive::<Int64Type>().iter() {
                match v {
                    Some(v) => {
                        let _ = write!(b, "{v}");
                        b.append_value("");
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        (DataType::Float64, DataType::Utf8) => {
            let mut b = StringBuilder::with_capacity(a.len(), a.len() * 8);
            let mut buf = String::new();
            for v in a.as_primitive::<Float64Type>().iter() {
                match v {
                    Some(v) => {
                        buf.clear();
                        format_f64(v, &mut buf);
                        b.append_value(&buf);
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        (DataType::Boolean, DataType::Utf8) => {
            let out: StringArray = a
                .as_boolean()
                .iter()
                .map(|v| v.map(|b| if b { "true" } else { "false" }))
                .collect();
            Arc::new(out)
        }
        (DataType::Utf8, DataType::Int64) => {
            let out: Int64Array = a
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(parse_i64))
                .collect();
            Arc::new(out)
        }
        (DataType::Utf8, DataType::Float64) => {
            let out: Float64Array = a
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(|s| s.trim().parse::<f64>().ok()))
                .collect();
            Arc::new(out)
        }
        (DataType::Utf8, DataType::Boolean) => {
            let out: BooleanArray = a
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(parse_bool))
                .collect();
            Arc::new(out)
        }
        _ => return Err(unsupported()),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substr_semantics() {
        assert_eq!(substr_one("hello", 1, None), "hello");
        assert_eq!(substr_one("hello", 2, Some(3)), "ell");
        assert_eq!(substr_one("hello", 0, Some(2)), "he");
        assert_eq!(substr_one("hello", -3, None), "llo");
        assert_eq!(substr_one("hello", -3, Some(2)), "ll");
        assert_eq!(substr_one("hello", -10, Some(7)), "he");
        assert_eq!(substr_one("hello", 4, Some(100)), "lo");
        assert_eq!(substr_one("hello", 6, None), "");
        assert_eq!(substr_one("hello", 2, Some(0)), "");
        assert_eq!(substr_one("hello", 2, Some(-1)), "");
        assert_eq!(substr_one("héllo", 2, Some(2)), "él");
        assert_eq!(substr_one("", 1, Some(1)), "");
        // Spark clamps the same way: start = 3 + MIN, end = start + MAX = 2.
        assert_eq!(substr_one("abc", i64::MIN, Some(i64::MAX)), "ab");
        assert_eq!(substr_one("abc", i64::MAX, Some(i64::MAX)), "");
        assert_eq!(substr_one("abc", 1, Some(i64::MAX)), "abc");
    }

    #[test]
    fn float_formatting() {
        let f = |v: f64| {
            let mut s = String::new();
            format_f64(v, &mut s);
            s
        };
        assert_eq!(f(1.0), "1.0");
        assert_eq!(f(-2.5), "-2.5");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f(0.1), "0.1");
    }

    #[test]
    fn string_parsing() {
        assert_eq!(parse_i64(" 42 "), Some(42));
        assert_eq!(parse_i64("1.9"), Some(1));
        assert_eq!(parse_i64("-1.9"), Some(-1));
        assert_eq!(parse_i64("x"), None);
        assert_eq!(parse_i64("1e300"), None);
        assert_eq!(parse_bool("YES"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(f64_to_i64(f64::NAN), None);
        assert_eq!(f64_to_i64(9.3e18), None);
        assert_eq!(f64_to_i64(i64::MIN as f64), Some(i64::MIN));
    }
}

//! The string, math, comparison and regular-expression functions, with
//! Spark's semantics: row by row over the arguments (a scalar argument
//! stands for every row), NULL in, NULL out unless a function says
//! otherwise.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_schema::{ArrowError, DataType};
use arrow_select::zip::zip;
use md5::{Digest, Md5};
use regex::Regex;
use sha2::{Sha224, Sha256, Sha384, Sha512};

use super::eval::Value;
use super::functions::f64_to_i64;
use super::types::{Func, RegexFunc};

/// Longest string `lpad`/`rpad` build: a length comes from the data.
pub(crate) const MAX_PAD_CHARS: i64 = 1 << 20;

/// One argument: its array and whether it is a scalar.
struct Arg<'a> {
    array: &'a ArrayRef,
    scalar: bool,
}

impl Arg<'_> {
    fn row(&self, i: usize) -> usize {
        if self.scalar {
            0
        } else {
            i
        }
    }

    fn str(&self, i: usize) -> Option<&str> {
        let a = self.array.as_string::<i32>();
        let r = self.row(i);
        a.is_valid(r).then(|| a.value(r))
    }

    fn int(&self, i: usize) -> Option<i64> {
        let a = self.array.as_primitive::<Int64Type>();
        let r = self.row(i);
        a.is_valid(r).then(|| a.value(r))
    }

    fn float(&self, i: usize) -> Option<f64> {
        let a = self.array.as_primitive::<Float64Type>();
        let r = self.row(i);
        a.is_valid(r).then(|| a.value(r))
    }

    fn bool(&self, i: usize) -> Option<bool> {
        let a = self.array.as_boolean();
        let r = self.row(i);
        a.is_valid(r).then(|| a.value(r))
    }
}

fn args(values: &[Value]) -> Vec<Arg<'_>> {
    values
        .iter()
        .map(|v| Arg {
            array: v.array(),
            scalar: v.is_scalar(),
        })
        .collect()
}

fn arg<'a>(args: &'a [Arg<'a>], i: usize, text: &str) -> Result<&'a Arg<'a>, ArrowError> {
    args.get(i)
        .ok_or_else(|| ArrowError::ComputeError(format!("{text}: missing argument {}", i + 1)))
}

/// Calls one of the library's functions over `len` rows.
pub(crate) fn call(
    func: Func,
    values: &[Value],
    len: usize,
    text: &str,
) -> Result<ArrayRef, ArrowError> {
    let a = args(values);
    let first = arg(&a, 0, text)?;
    Ok(match func {
        Func::Trim => strings(len, |i| first.str(i).map(|s| s.trim_matches(' '))),
        Func::Ltrim => strings(len, |i| first.str(i).map(|s| s.trim_start_matches(' '))),
        Func::Rtrim => strings(len, |i| first.str(i).map(|s| s.trim_end_matches(' '))),
        Func::Replace => {
            let from = arg(&a, 1, text)?;
            let to = a.get(2);
            strings_owned(len, |i| {
                let (s, from) = (first.str(i)?, from.str(i)?);
                let to = match to {
                    Some(t) => t.str(i)?,
                    None => "",
                };
                Some(if from.is_empty() {
                    s.to_string()
                } else {
                    s.replace(from, to)
                })
            })
        }
        Func::StartsWith | Func::EndsWith => {
            let affix = arg(&a, 1, text)?;
            let mut b = BooleanBuilder::with_capacity(len);
            for i in 0..len {
                b.append_option(first.str(i).zip(affix.str(i)).map(|(s, x)| {
                    if func == Func::StartsWith {
                        s.starts_with(x)
                    } else {
                        s.ends_with(x)
                    }
                }));
            }
            Arc::new(b.finish())
        }
        Func::Lpad | Func::Rpad => {
            let width = arg(&a, 1, text)?;
            let pad = a.get(2);
            let mut out = Vec::with_capacity(len);
            for i in 0..len {
                let (Some(s), Some(n)) = (first.str(i), width.int(i)) else {
                    out.push(None);
                    continue;
                };
                let p = match pad {
                    Some(p) => match p.str(i) {
                        Some(p) => p,
                        None => {
                            out.push(None);
                            continue;
                        }
                    },
                    None => " ",
                };
                if n > MAX_PAD_CHARS {
                    return Err(ArrowError::ComputeError(format!(
                        "`{text}`: cannot pad to {n} characters (at most {MAX_PAD_CHARS})"
                    )));
                }
                out.push(Some(pad_one(s, n, p, func == Func::Lpad)));
            }
            Arc::new(out.into_iter().collect::<StringArray>())
        }
        Func::Round => round(first, a.get(1), len, text)?,
        Func::Floor | Func::Ceil => match first.array.data_type() {
            DataType::Float64 => {
                let mut b = Int64Builder::with_capacity(len);
                for i in 0..len {
                    b.append_option(first.float(i).and_then(|v| {
                        let r = if func == Func::Floor {
                            v.floor()
                        } else {
                            v.ceil()
                        };
                        f64_to_i64(r)
                    }));
                }
                Arc::new(b.finish())
            }
            _ => Arc::clone(first.array),
        },
        Func::Pow => {
            let e = arg(&a, 1, text)?;
            floats(len, |i| Some(first.float(i)?.powf(e.float(i)?)))
        }
        Func::Sqrt => floats(len, |i| first.float(i).map(f64::sqrt)),
        Func::Exp => floats(len, |i| first.float(i).map(f64::exp)),
        Func::Ln => floats(len, |i| first.float(i).filter(|v| *v > 0.0).map(f64::ln)),
        Func::Greatest | Func::Least => extreme(&a, len, func == Func::Greatest)?,
        Func::NullIf => {
            let (Some(l), Some(r)) = (values.first(), values.get(1)) else {
                return Err(ArrowError::ComputeError(format!(
                    "{text}: expects 2 arguments"
                )));
            };
            let (l, r) = (l.clone().into_array(len)?, r.clone().into_array(len)?);
            let equal = arrow_ord::cmp::eq(&l, &r)?;
            let nulls = arrow_array::new_null_array(l.data_type(), len);
            // Equal (and both non-NULL): NULL; otherwise the first value.
            zip(&equal, &nulls, &l)?
        }
        Func::Md5 => strings_owned(len, |i| Some(hex(&Md5::digest(first.str(i)?.as_bytes())))),
        Func::Sha2 => {
            let bits = arg(&a, 1, text)?;
            strings_owned(len, |i| {
                let s = first.str(i)?.as_bytes();
                Some(match bits.int(i)? {
                    0 | 256 => hex(&Sha256::digest(s)),
                    224 => hex(&Sha224::digest(s)),
                    384 => hex(&Sha384::digest(s)),
                    512 => hex(&Sha512::digest(s)),
                    _ => return None,
                })
            })
        }
        Func::Hash => {
            let mut hashes = vec![SPARK_HASH_SEED; len];
            for x in &a {
                hash_into(x, &mut hashes)?;
            }
            let out: Int64Array = hashes.into_iter().map(|h| i64::from(h as i32)).collect();
            Arc::new(out)
        }
        Func::Lower | Func::Upper | Func::Length | Func::Abs | Func::Concat | Func::Substr => {
            return Err(ArrowError::ComputeError(format!(
                "{text}: {func:?} is not a library function"
            )))
        }
    })
}

/// Calls a regular-expression function: `values` are the arguments other
/// than the pattern.
pub(crate) fn call_regex(
    func: RegexFunc,
    regex: &Regex,
    values: &[Value],
    len: usize,
    text: &str,
) -> Result<ArrayRef, ArrowError> {
    let a = args(values);
    let s = arg(&a, 0, text)?;
    Ok(match func {
        RegexFunc::Like => {
            let mut b = BooleanBuilder::with_capacity(len);
            for i in 0..len {
                b.append_option(s.str(i).map(|v| regex.is_match(v)));
            }
            Arc::new(b.finish())
        }
        RegexFunc::Replace => {
            let rep = arg(&a, 1, text)?;
            strings_owned(len, |i| {
                Some(regex.replace_all(s.str(i)?, rep.str(i)?).into_owned())
            })
        }
        RegexFunc::Extract => {
            let group = a.get(1);
            let mut out = Vec::with_capacity(len);
            for i in 0..len {
                let Some(v) = s.str(i) else {
                    out.push(None);
                    continue;
                };
                let g = match group {
                    Some(g) => match g.int(i) {
                        Some(g) => g,
                        None => {
                            out.push(None);
                            continue;
                        }
                    },
                    None => 1,
                };
                if g < 0 || g as usize >= regex.captures_len() {
                    return Err(ArrowError::ComputeError(format!(
                        "`{text}`: the pattern has {} group(s), so group {g} does not exist",
                        regex.captures_len() - 1
                    )));
                }
                // Like Spark: '' when the pattern or the group does not match.
                let found = regex
                    .captures(v)
                    .and_then(|c| c.get(g as usize))
                    .map_or("", |m| m.as_str());
                out.push(Some(found.to_string()));
            }
            Arc::new(out.into_iter().collect::<StringArray>())
        }
    })
}

/// Lower-case hexadecimal, as Spark's `md5` and `sha2` return.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The seed of Spark's `hash`.
const SPARK_HASH_SEED: u32 = 42;

/// Hashes one argument of Spark's `hash` into each row's running hash
/// (the seed of the next argument); NULLs leave it as it is.
fn hash_into(x: &Arg<'_>, hashes: &mut [u32]) -> Result<(), ArrowError> {
    for (i, h) in hashes.iter_mut().enumerate() {
        let r = x.row(i);
        if x.array.is_null(r) {
            continue;
        }
        *h = match x.array.data_type() {
            DataType::Int64 => murmur3::hash_long(x.array.as_primitive::<Int64Type>().value(r), *h),
            DataType::Float64 => {
                let v = x.array.as_primitive::<Float64Type>().value(r);
                // Java's doubleToLongBits, with -0.0 as 0.0 (Spark).
                let bits = if v == 0.0 {
                    0
                } else if v.is_nan() {
                    0x7ff8_0000_0000_0000
                } else {
                    v.to_bits() as i64
                };
                murmur3::hash_long(bits, *h)
            }
            DataType::Boolean => murmur3::hash_int(i32::from(x.array.as_boolean().value(r)), *h),
            DataType::Utf8 => {
                murmur3::hash_bytes(x.array.as_string::<i32>().value(r).as_bytes(), *h)
            }
            DataType::Null => *h,
            other => {
                return Err(ArrowError::ComputeError(format!(
                    "hash cannot hash {other}"
                )))
            }
        };
    }
    Ok(())
}

/// Spark's Murmur3 (x86, 32 bits) as its `hash` computes it, trailing
/// bytes of a string included one by one (which the reference algorithm
/// does not).
mod murmur3 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;

    fn mix_k1(k1: u32) -> u32 {
        k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
    }

    fn mix_h1(h1: u32, k1: u32) -> u32 {
        (h1 ^ k1)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64)
    }

    fn fmix(h1: u32, len: u32) -> u32 {
        let mut h = h1 ^ len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }

    pub(super) fn hash_int(v: i32, seed: u32) -> u32 {
        fmix(mix_h1(seed, mix_k1(v as u32)), 4)
    }

    pub(super) fn hash_long(v: i64, seed: u32) -> u32 {
        let v = v as u64;
        let h = mix_h1(seed, mix_k1(v as u32));
        fmix(mix_h1(h, mix_k1((v >> 32) as u32)), 8)
    }

    pub(super) fn hash_bytes(b: &[u8], seed: u32) -> u32 {
        let aligned = b.len() - b.len() % 4;
        let mut h = seed;
        for c in b[..aligned].chunks_exact(4) {
            h = mix_h1(h, mix_k1(u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
        for &byte in &b[aligned..] {
            // A signed byte, widened.
            h = mix_h1(h, mix_k1(i32::from(byte as i8) as u32));
        }
        fmix(h, b.len() as u32)
    }
}

fn strings<'a>(len: usize, f: impl Fn(usize) -> Option<&'a str>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(len, len * 8);
    for i in 0..len {
        b.append_option(f(i));
    }
    Arc::new(b.finish())
}

fn strings_owned(len: usize, f: impl Fn(usize) -> Option<String>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(len, len * 8);
    for i in 0..len {
        b.append_option(f(i));
    }
    Arc::new(b.finish())
}

fn floats(len: usize, f: impl Fn(usize) -> Option<f64>) -> ArrayRef {
    let mut b = Float64Builder::with_capacity(len);
    for i in 0..len {
        b.append_option(f(i));
    }
    Arc::new(b.finish())
}

/// `lpad`/`rpad` of one value, Spark's way: a longer string is cut to `n`
/// characters, an empty pad pads nothing, `n < 1` gives ''.
fn pad_one(s: &str, n: i64, pad: &str, left: bool) -> String {
    let n = n.max(0) as usize;
    let chars = s.chars().count();
    if chars >= n {
        return s.chars().take(n).collect();
    }
    if pad.is_empty() {
        return s.to_string();
    }
    let fill: String = pad.chars().cycle().take(n - chars).collect();
    if left {
        fill + s
    } else {
        s.to_string() + &fill
    }
}

/// `round(x[, d])`: half away from zero (Spark's HALF_UP) to `d` decimal
/// places (default 0; negative rounds to tens, hundreds, …).
fn round(x: &Arg<'_>, d: Option<&Arg<'_>>, len: usize, text: &str) -> Result<ArrayRef, ArrowError> {
    let places = |i: usize| -> Option<i64> {
        match d {
            Some(d) => d.int(i),
            None => Some(0),
        }
    };
    if x.array.data_type() == &DataType::Float64 {
        let mut b = Float64Builder::with_capacity(len);
        for i in 0..len {
            b.append_option(x.float(i).zip(places(i)).map(|(v, d)| round_f64(v, d)));
        }
        return Ok(Arc::new(b.finish()));
    }
    let mut b = Int64Builder::with_capacity(len);
    for i in 0..len {
        let (Some(v), Some(d)) = (x.int(i), places(i)) else {
            b.append_null();
            continue;
        };
        b.append_value(round_i64(v, d).ok_or_else(|| {
            ArrowError::ArithmeticOverflow(format!("integer overflow in `{text}`"))
        })?);
    }
    Ok(Arc::new(b.finish()))
}

fn round_f64(v: f64, d: i64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let d = d.clamp(-308, 308) as i32;
    let scale = 10f64.powi(d.abs());
    let r = if d >= 0 {
        (v * scale).round() / scale
    } else {
        (v / scale).round() * scale
    };
    // Scaling overflowed: more places than a double holds.
    if r.is_finite() {
        r
    } else {
        v
    }
}

fn round_i64(v: i64, d: i64) -> Option<i64> {
    if d >= 0 {
        return Some(v);
    }
    if d < -18 {
        return Some(0);
    }
    let scale = 10i64.pow((-d) as u32);
    let rem = v % scale;
    let down = v - rem;
    if rem.abs() * 2 >= scale {
        down.checked_add(if v < 0 { -scale } else { scale })
    } else {
        Some(down)
    }
}

/// `greatest`/`least`: NULLs skipped; NULL only when every argument is.
fn extreme(a: &[Arg<'_>], len: usize, greatest: bool) -> Result<ArrayRef, ArrowError> {
    let wanted = if greatest {
        Ordering::Greater
    } else {
        Ordering::Less
    };
    Ok(match a.first().map(|x| x.array.data_type()) {
        Some(DataType::Int64) => Arc::new(
            (0..len)
                .map(|i| best(a.iter().filter_map(|x| x.int(i)), wanted, Ord::cmp))
                .collect::<Int64Array>(),
        ),
        // NaN is larger than any other value, as in Spark.
        Some(DataType::Float64) => Arc::new(
            (0..len)
                .map(|i| best(a.iter().filter_map(|x| x.float(i)), wanted, f64::total_cmp))
                .collect::<Float64Array>(),
        ),
        Some(DataType::Utf8) => Arc::new(
            (0..len)
                .map(|i| best(a.iter().filter_map(|x| x.str(i)), wanted, Ord::cmp))
                .collect::<StringArray>(),
        ),
        Some(DataType::Boolean) => Arc::new(
            (0..len)
                .map(|i| best(a.iter().filter_map(|x| x.bool(i)), wanted, Ord::cmp))
                .collect::<BooleanArray>(),
        ),
        other => {
            return Err(ArrowError::ComputeError(format!(
                "greatest/least cannot compare {other:?}"
            )))
        }
    })
}

/// The value that compares `wanted` to all the others (the first of equals).
fn best<T>(
    values: impl Iterator<Item = T>,
    wanted: Ordering,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> Option<T> {
    values.reduce(|best, v| if cmp(&v, &best) == wanted { v } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_spark() {
        assert_eq!(pad_one("hi", 5, "ab", true), "abahi");
        assert_eq!(pad_one("hi", 5, "ab", false), "hiaba");
        assert_eq!(pad_one("hello", 3, "x", true), "hel");
        assert_eq!(pad_one("hi", 5, "", true), "hi");
        assert_eq!(pad_one("hi", -1, "x", true), "");
        assert_eq!(pad_one("é", 3, "ü", true), "üüé");
    }

    /// Values Spark's `hash` returns (seed 42).
    #[test]
    fn murmur3_matches_spark() {
        assert_eq!(murmur3::hash_int(0, 42) as i32, 933_211_791);
        assert_eq!(murmur3::hash_int(4, 42) as i32, -397_064_898);
        assert_eq!(murmur3::hash_int(1, 42), 0xdea5_78e3);
        assert_eq!(murmur3::hash_long(1, 42), 0x99f0_149d);
        assert_eq!(murmur3::hash_long(0, 42), 0x9c67_b85d);
        assert_eq!(murmur3::hash_long(-1, 42), 0xc800_8529);
        assert_eq!(murmur3::hash_bytes(b"hello", 42), 3_286_402_344);
        assert_eq!(murmur3::hash_bytes(b"", 42), 142_593_372);
        assert_eq!(murmur3::hash_bytes(b"abc", 42), 1_322_437_556);
        assert_eq!(murmur3::hash_bytes(&[0, 0xc8], 42) as i32, -424_716_282);
    }

    #[test]
    fn digests_are_lower_case_hex() {
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_f64(2.5, 0), 3.0);
        assert_eq!(round_f64(-2.5, 0), -3.0);
        assert_eq!(round_f64(1.2345, 2), 1.23);
        assert_eq!(round_f64(1250.0, -2), 1300.0);
        assert_eq!(round_f64(f64::MAX, 5), f64::MAX);
        assert!(round_f64(f64::NAN, 1).is_nan());
        assert_eq!(round_i64(125, -1), Some(130));
        assert_eq!(round_i64(-125, -1), Some(-130));
        assert_eq!(round_i64(124, -1), Some(120));
        assert_eq!(round_i64(7, 2), Some(7));
        assert_eq!(round_i64(i64::MAX, -1), None);
        assert_eq!(round_i64(123, -40), Some(0));
    }
}

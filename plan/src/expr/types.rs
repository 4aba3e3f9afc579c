//! Type rules: binds a logical tree to a schema and produces the physical
//! operator tree, inserting the implicit casts the rules call for.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use arrow_array::{new_null_array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_schema::{DataType, Schema};

use super::json_path::JsonPath;
use super::parse::{BinOp, CastTarget, Lit, Logical};
use super::ExprError;

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// Scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Lower,
    Upper,
    Length,
    Abs,
    Concat,
    Substr,
    Trim,
    Ltrim,
    Rtrim,
    Replace,
    StartsWith,
    EndsWith,
    Lpad,
    Rpad,
    Round,
    Floor,
    Ceil,
    Pow,
    Sqrt,
    Ln,
    Exp,
    Greatest,
    Least,
    NullIf,
    Md5,
    Sha2,
    Hash,
}

/// Scalar functions taking a regular expression, compiled at bind time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegexFunc {
    /// `regexp_replace(s, pattern, replacement)`.
    Replace,
    /// `regexp_extract(s, pattern[, group])`.
    Extract,
    /// `rlike(s, pattern)`.
    Like,
}

/// A physical operator with its output type.
#[derive(Debug, Clone)]
pub(crate) struct Phys {
    pub(crate) kind: Kind,
    pub(crate) data_type: DataType,
    pub(crate) nullable: bool,
}

/// The physical operators. Children are never dictionary-typed: dictionary
/// columns are either handled by [`Kind::DictMap`] or unpacked by
/// [`Kind::Unpack`].
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A column of the input.
    Column(usize),
    /// A one-element array used as a kernel scalar.
    Literal(ArrayRef),
    /// Both operands have the output type.
    Arith {
        op: ArithOp,
        left: Box<Phys>,
        right: Box<Phys>,
        text: String,
    },
    /// Both operands have the same type.
    Cmp {
        op: CmpOp,
        left: Box<Phys>,
        right: Box<Phys>,
    },
    And(Box<Phys>, Box<Phys>),
    Or(Box<Phys>, Box<Phys>),
    Not(Box<Phys>),
    Neg {
        expr: Box<Phys>,
        text: String,
    },
    IsNull {
        expr: Box<Phys>,
        negated: bool,
    },
    Like {
        expr: Box<Phys>,
        pattern: Box<Phys>,
        negated: bool,
        case_insensitive: bool,
    },
    /// Conditions are Boolean; results and `else_result` have the output type.
    Case {
        whens: Vec<(Phys, Phys)>,
        else_result: Box<Phys>,
    },
    /// All arguments have the output type.
    Coalesce(Vec<Phys>),
    /// Cast to the node's `data_type`.
    Cast(Box<Phys>),
    /// Dictionary to plain Utf8.
    Unpack(Box<Phys>),
    /// Evaluates `inner` over the values of the dictionary column `column`
    /// (bound as Utf8) and maps the result back through the keys.
    DictMap {
        column: usize,
        inner: Box<Phys>,
        text: String,
    },
    Func {
        func: Func,
        args: Vec<Phys>,
        text: String,
    },
    /// `json_extract(arg, path)`: `arg` is a string.
    JsonPath {
        path: Arc<JsonPath>,
        arg: Box<Phys>,
    },
    /// The pattern is the regex's; `args` are the other arguments.
    Regex {
        func: RegexFunc,
        regex: Arc<Regex>,
        args: Vec<Phys>,
        text: String,
    },
}

/// Largest compiled size of a pattern in an expression: a pattern is part
/// of a spec anyone who may submit writes.
pub(crate) const MAX_REGEX_BYTES: usize = 1 << 20;

/// The dictionary type Weir supports.
pub(crate) fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn is_numeric(t: &DataType) -> bool {
    matches!(t, DataType::Int64 | DataType::Float64)
}

/// Common type of numeric (or NULL) operands.
fn numeric_common(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    match (a, b) {
        (Int64 | Null, Int64 | Null) => Some(Int64),
        (Float64, Int64 | Float64 | Null) | (Int64 | Null, Float64) => Some(Float64),
        _ => None,
    }
}

/// Common type for comparison, CASE and coalesce.
fn common(a: &DataType, b: &DataType) -> Option<DataType> {
    if is_numeric(a) && is_numeric(b) {
        return numeric_common(a, b);
    }
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        (a, b) if a == b => Some(a.clone()),
        _ => None,
    }
}

fn literal(array: ArrayRef) -> Phys {
    let nullable = array.data_type() == &DataType::Null || array.is_null(0);
    Phys {
        data_type: array.data_type().clone(),
        kind: Kind::Literal(array),
        nullable,
    }
}

fn null_literal(t: &DataType) -> Phys {
    literal(new_null_array(t, 1))
}

/// Converts `p` to type `t` (an implicit cast; the caller has checked it is
/// allowed).
fn coerce(p: Phys, t: &DataType) -> Phys {
    if &p.data_type == t {
        p
    } else if p.data_type == DataType::Null {
        null_literal(t)
    } else {
        Phys {
            nullable: p.nullable,
            kind: Kind::Cast(Box::new(p)),
            data_type: t.clone(),
        }
    }
}

fn node(kind: Kind, data_type: DataType, nullable: bool) -> Phys {
    Phys {
        kind,
        data_type,
        nullable,
    }
}

/// Binds logical trees to a schema.
pub(crate) struct Binder<'a> {
    sql: &'a str,
    schema: &'a Schema,
    /// Set while binding a sub-expression evaluated over the values of this
    /// dictionary column: the column is then seen as Utf8.
    dict_values_of: Option<usize>,
}

impl<'a> Binder<'a> {
    pub(crate) fn new(sql: &'a str, schema: &'a Schema) -> Self {
        Binder {
            sql,
            schema,
            dict_values_of: None,
        }
    }

    fn type_error(&self, message: String) -> ExprError {
        ExprError::Type {
            sql: self.sql.to_string(),
            message,
        }
    }

    /// Binds `l`; the result may be dictionary-typed (only allowed at the root).
    pub(crate) fn bind(&self, l: &Logical) -> Result<Phys, ExprError> {
        if self.dict_values_of.is_none() && !matches!(l, Logical::Column(_) | Logical::Literal(_)) {
            if let [name] = l.columns().as_slice() {
                let (idx, field) = self.column(name)?;
                if field.data_type() == &dict_type() {
                    let inner_binder = Binder {
                        sql: self.sql,
                        schema: self.schema,
                        dict_values_of: Some(idx),
                    };
                    let inner = inner_binder.bind_child(l)?;
                    let data_type = if inner.data_type == DataType::Utf8 {
                        dict_type()
                    } else {
                        inner.data_type.clone()
                    };
                    let nullable = inner.nullable || field.is_nullable();
                    return Ok(node(
                        Kind::DictMap {
                            column: idx,
                            inner: Box::new(inner),
                            text: name.clone(),
                        },
                        data_type,
                        nullable,
                    ));
                }
            }
        }
        self.bind_inner(l)
    }

    /// Binds `l` as an operand: dictionaries are unpacked to Utf8.
    fn bind_child(&self, l: &Logical) -> Result<Phys, ExprError> {
        let p = self.bind(l)?;
        Ok(if p.data_type == dict_type() {
            node(
                Kind::Unpack(Box::new(p.clone())),
                DataType::Utf8,
                p.nullable,
            )
        } else {
            p
        })
    }

    fn column(&self, name: &str) -> Result<(usize, &arrow_schema::Field), ExprError> {
        self.schema
            .column_with_name(name)
            .ok_or_else(|| ExprError::UnknownColumn {
                sql: self.sql.to_string(),
                name: name.to_string(),
                available: self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn bind_inner(&self, l: &Logical) -> Result<Phys, ExprError> {
        match l {
            Logical::Column(name) => {
                let (idx, field) = self.column(name)?;
                let t = field.data_type();
                if self.dict_values_of == Some(idx) {
                    return Ok(node(Kind::Column(idx), DataType::Utf8, true));
                }
                let supported = matches!(
                    t,
                    DataType::Int64 | DataType::Float64 | DataType::Utf8 | DataType::Boolean
                ) || t == &dict_type();
                if !supported {
                    return Err(self.type_error(format!(
                        "column '{name}' has unsupported type {t} (expected Int64, Float64, Utf8, Boolean or Dictionary(Int32, Utf8))"
                    )));
                }
                Ok(node(Kind::Column(idx), t.clone(), field.is_nullable()))
            }
            Logical::Literal(lit) => Ok(literal(match lit {
                Lit::Int(v) => Arc::new(Int64Array::from(vec![*v])) as ArrayRef,
                Lit::Float(v) => Arc::new(Float64Array::from(vec![*v])),
                Lit::Str(s) => Arc::new(StringArray::from(vec![s.as_str()])),
                Lit::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
                Lit::Null => new_null_array(&DataType::Null, 1),
            })),
            Logical::Binary {
                left,
                op,
                right,
                text,
            } => {
                let l = self.bind_child(left)?;
                let r = self.bind_child(right)?;
                self.binary(l, *op, r, text)
            }
            Logical::Not(e) => {
                let e = self.bind_child(e)?;
                let e = self.expect_boolean(e, "NOT")?;
                let nullable = e.nullable;
                Ok(node(Kind::Not(Box::new(e)), DataType::Boolean, nullable))
            }
            Logical::Neg(e) => {
                let e = self.bind_child(e)?;
                let t = match &e.data_type {
                    DataType::Null => DataType::Int64,
                    t if is_numeric(t) => t.clone(),
                    t => {
                        return Err(self.type_error(format!(
                            "cannot apply unary '-' to {t} (expected a number)"
                        )))
                    }
                };
                let e = coerce(e, &t);
                let nullable = e.nullable;
                Ok(node(
                    Kind::Neg {
                        expr: Box::new(e),
                        text: l_text(l),
                    },
                    t,
                    nullable,
                ))
            }
            Logical::IsNull { expr, negated } => {
                let e = self.bind_child(expr)?;
                Ok(node(
                    Kind::IsNull {
                        expr: Box::new(e),
                        negated: *negated,
                    },
                    DataType::Boolean,
                    false,
                ))
            }
            Logical::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let e = self.bind_child(expr)?;
                let lo = self.bind_child(low)?;
                let hi = self.bind_child(high)?;
                let ge = self.binary(e.clone(), BinOp::GtEq, lo, "BETWEEN")?;
                let le = self.binary(e, BinOp::LtEq, hi, "BETWEEN")?;
                let both = self.binary(ge, BinOp::And, le, "BETWEEN")?;
                Ok(self.maybe_not(both, *negated))
            }
            Logical::InList {
                expr,
                list,
                negated,
            } => {
                let e = self.bind_child(expr)?;
                let mut acc: Option<Phys> = None;
                for item in list {
                    let item = self.bind_child(item)?;
                    if common(&e.data_type, &item.data_type).is_none() {
                        return Err(self.type_error(format!(
                            "IN list item of type {} cannot be compared with {}",
                            item.data_type, e.data_type
                        )));
                    }
                    let eq = self.binary(e.clone(), BinOp::Eq, item, "IN")?;
                    acc = Some(match acc {
                        None => eq,
                        Some(prev) => self.binary(prev, BinOp::Or, eq, "IN")?,
                    });
                }
                match acc {
                    Some(acc) => Ok(self.maybe_not(acc, *negated)),
                    None => Err(ExprError::Unsupported {
                        sql: self.sql.to_string(),
                        construct: "empty IN list".into(),
                    }),
                }
            }
            Logical::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => {
                let e = self.bind_child(expr)?;
                let p = self.bind_child(pattern)?;
                let kw = if *case_insensitive { "ILIKE" } else { "LIKE" };
                for (what, x) in [("operand", &e), ("pattern", &p)] {
                    if !matches!(x.data_type, DataType::Utf8 | DataType::Null) {
                        return Err(self.type_error(format!(
                            "{kw} expects a string {what}, found {}",
                            x.data_type
                        )));
                    }
                }
                let nullable = e.nullable || p.nullable;
                Ok(node(
                    Kind::Like {
                        expr: Box::new(coerce(e, &DataType::Utf8)),
                        pattern: Box::new(coerce(p, &DataType::Utf8)),
                        negated: *negated,
                        case_insensitive: *case_insensitive,
                    },
                    DataType::Boolean,
                    nullable,
                ))
            }
            Logical::Case { whens, else_result } => {
                let mut conds = Vec::with_capacity(whens.len());
                let mut results = Vec::with_capacity(whens.len() + 1);
                for (c, r) in whens {
                    let c = self.bind_child(c)?;
                    conds.push(self.expect_boolean(c, "CASE WHEN condition")?);
                    results.push(self.bind_child(r)?);
                }
                let has_else = else_result.is_some();
                match else_result {
                    Some(e) => results.push(self.bind_child(e)?),
                    None => results.push(null_literal(&DataType::Null)),
                }
                let t = self.unify(&results, "CASE branches")?;
                if t == DataType::Null {
                    return Ok(null_literal(&t));
                }
                let mut results: Vec<Phys> = results.into_iter().map(|r| coerce(r, &t)).collect();
                let nullable = !has_else || results.iter().any(|r| r.nullable);
                let else_result = results.pop().unwrap_or_else(|| null_literal(&t));
                Ok(node(
                    Kind::Case {
                        whens: conds.into_iter().zip(results).collect(),
                        else_result: Box::new(else_result),
                    },
                    t,
                    nullable,
                ))
            }
            Logical::Cast { expr, target } => {
                let e = self.bind_child(expr)?;
                let t = match target {
                    CastTarget::BigInt => DataType::Int64,
                    CastTarget::Double => DataType::Float64,
                    CastTarget::String => DataType::Utf8,
                    CastTarget::Boolean => DataType::Boolean,
                };
                if e.data_type == t {
                    return Ok(e);
                }
                if e.data_type == DataType::Null {
                    return Ok(null_literal(&t));
                }
                // Parsing strings and converting doubles to integers can fail,
                // producing NULL.
                let nullable = e.nullable
                    || e.data_type == DataType::Utf8
                    || (e.data_type == DataType::Float64 && t == DataType::Int64);
                Ok(node(Kind::Cast(Box::new(e)), t, nullable))
            }
            Logical::Function { name, args } => self.function(name, args, l),
        }
    }

    fn maybe_not(&self, p: Phys, negated: bool) -> Phys {
        if negated {
            let nullable = p.nullable;
            node(Kind::Not(Box::new(p)), DataType::Boolean, nullable)
        } else {
            p
        }
    }

    fn expect_boolean(&self, p: Phys, what: &str) -> Result<Phys, ExprError> {
        match p.data_type {
            DataType::Boolean => Ok(p),
            DataType::Null => Ok(null_literal(&DataType::Boolean)),
            ref t => Err(self.type_error(format!("{what} expects Boolean, found {t}"))),
        }
    }

    /// Common type of several values (CASE branches, coalesce arguments).
    fn unify(&self, items: &[Phys], what: &str) -> Result<DataType, ExprError> {
        let mut t = DataType::Null;
        for item in items {
            t = common(&t, &item.data_type).ok_or_else(|| {
                self.type_error(format!(
                    "{what} must have the same type, found {t} and {}",
                    item.data_type
                ))
            })?;
        }
        Ok(t)
    }

    fn binary(&self, l: Phys, op: BinOp, r: Phys, text: &str) -> Result<Phys, ExprError> {
        let (lt, rt) = (l.data_type.clone(), r.data_type.clone());
        let mismatch = |expected: &str| {
            self.type_error(format!(
                "cannot apply '{}' to {lt} and {rt} (expected {expected})",
                op.symbol()
            ))
        };
        let nullable = l.nullable || r.nullable;
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                let Some(mut t) = numeric_common(&lt, &rt) else {
                    return Err(mismatch("numbers"));
                };
                if op == BinOp::Div {
                    t = DataType::Float64;
                }
                let arith = match op {
                    BinOp::Add => ArithOp::Add,
                    BinOp::Sub => ArithOp::Sub,
                    BinOp::Mul => ArithOp::Mul,
                    BinOp::Div => ArithOp::Div,
                    _ => ArithOp::Rem,
                };
                let nullable = nullable || matches!(arith, ArithOp::Div | ArithOp::Rem);
                Ok(node(
                    Kind::Arith {
                        op: arith,
                        left: Box::new(coerce(l, &t)),
                        right: Box::new(coerce(r, &t)),
                        text: text.to_string(),
                    },
                    t,
                    nullable,
                ))
            }
            BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
                let Some(t) = common(&lt, &rt) else {
                    return Err(mismatch("two numbers, two strings or two booleans"));
                };
                if t == DataType::Null {
                    return Ok(null_literal(&DataType::Boolean));
                }
                let cmp = match op {
                    BinOp::Eq => CmpOp::Eq,
                    BinOp::NotEq => CmpOp::NotEq,
                    BinOp::Lt => CmpOp::Lt,
                    BinOp::LtEq => CmpOp::LtEq,
                    BinOp::Gt => CmpOp::Gt,
                    _ => CmpOp::GtEq,
                };
                Ok(node(
                    Kind::Cmp {
                        op: cmp,
                        left: Box::new(coerce(l, &t)),
                        right: Box::new(coerce(r, &t)),
                    },
                    DataType::Boolean,
                    nullable,
                ))
            }
            BinOp::And | BinOp::Or => {
                let ok = |t: &DataType| matches!(t, DataType::Boolean | DataType::Null);
                if !ok(&lt) || !ok(&rt) {
                    return Err(mismatch("Boolean operands"));
                }
                let (l, r) = (
                    Box::new(coerce(l, &DataType::Boolean)),
                    Box::new(coerce(r, &DataType::Boolean)),
                );
                let kind = if op == BinOp::And {
                    Kind::And(l, r)
                } else {
                    Kind::Or(l, r)
                };
                Ok(node(kind, DataType::Boolean, nullable))
            }
        }
    }

    fn function(&self, name: &str, args: &[Logical], l: &Logical) -> Result<Phys, ExprError> {
        let (func, min, max) = match name {
            "lower" | "lcase" => (Func::Lower, 1, 1),
            "upper" | "ucase" => (Func::Upper, 1, 1),
            "length" | "char_length" | "character_length" => (Func::Length, 1, 1),
            "abs" => (Func::Abs, 1, 1),
            "concat" => (Func::Concat, 1, usize::MAX),
            "substr" | "substring" => (Func::Substr, 2, 3),
            "trim" => (Func::Trim, 1, 1),
            "ltrim" => (Func::Ltrim, 1, 1),
            "rtrim" => (Func::Rtrim, 1, 1),
            "replace" => (Func::Replace, 2, 3),
            "starts_with" | "startswith" => (Func::StartsWith, 2, 2),
            "ends_with" | "endswith" => (Func::EndsWith, 2, 2),
            "lpad" => (Func::Lpad, 2, 3),
            "rpad" => (Func::Rpad, 2, 3),
            "round" => (Func::Round, 1, 2),
            "floor" => (Func::Floor, 1, 1),
            "ceil" | "ceiling" => (Func::Ceil, 1, 1),
            "pow" | "power" => (Func::Pow, 2, 2),
            "sqrt" => (Func::Sqrt, 1, 1),
            "ln" => (Func::Ln, 1, 1),
            "exp" => (Func::Exp, 1, 1),
            "greatest" => (Func::Greatest, 2, usize::MAX),
            "least" => (Func::Least, 2, usize::MAX),
            "nullif" => (Func::NullIf, 2, 2),
            "md5" => (Func::Md5, 1, 1),
            "sha2" => (Func::Sha2, 2, 2),
            "sha256" => {
                self.arity(name, args, 1, 1)?;
                let with_bits = [args[0].clone(), Logical::Literal(Lit::Int(256))];
                return self.function("sha2", &with_bits, l);
            }
            "hash" => (Func::Hash, 1, usize::MAX),
            "regexp_replace" => return self.regex(RegexFunc::Replace, name, args, 3, 3),
            "regexp_extract" => return self.regex(RegexFunc::Extract, name, args, 2, 3),
            "rlike" | "regexp_like" => return self.regex(RegexFunc::Like, name, args, 2, 2),
            "json_extract" | "get_json_object" => return self.json_extract(name, args),
            "coalesce" | "ifnull" | "nvl" => {
                if name != "coalesce" {
                    self.arity(name, args, 2, 2)?;
                }
                if args.is_empty() {
                    return Err(self.type_error("coalesce expects at least 1 argument".into()));
                }
                let args = args
                    .iter()
                    .map(|a| self.bind_child(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let t = self.unify(&args, "coalesce arguments")?;
                if t == DataType::Null {
                    return Ok(null_literal(&t));
                }
                let nullable = args.iter().all(|a| a.nullable);
                let args = args.into_iter().map(|a| coerce(a, &t)).collect();
                return Ok(node(Kind::Coalesce(args), t, nullable));
            }
            other => {
                return Err(ExprError::Unsupported {
                    sql: self.sql.to_string(),
                    construct: format!("function {other} (supported: {SUPPORTED})"),
                })
            }
        };
        self.arity(name, args, min, max)?;
        let args = args
            .iter()
            .map(|a| self.bind_child(a))
            .collect::<Result<Vec<_>, _>>()?;
        let nullable = args.iter().any(|a| a.nullable);
        let expect = |i: usize, a: Phys, t: &DataType| -> Result<Phys, ExprError> {
            if &a.data_type == t || a.data_type == DataType::Null {
                Ok(coerce(a, t))
            } else {
                Err(self.type_error(format!(
                    "{name} expects {t} for argument {}, found {}",
                    i + 1,
                    a.data_type
                )))
            }
        };
        let text = l_text(l);
        // Each argument of the type `t` gives for its position.
        let typed = |args: Vec<Phys>, t: &dyn Fn(usize) -> DataType| {
            args.into_iter()
                .enumerate()
                .map(|(i, a)| expect(i, a, &t(i)))
                .collect::<Result<Vec<_>, _>>()
        };
        let strings = |args: Vec<Phys>| typed(args, &|_| DataType::Utf8);
        // A string, then BIGINTs (`substr`), or a string, a BIGINT and
        // strings (`lpad`, `sha2`).
        let string_then_ints = |i: usize| {
            if i == 0 {
                DataType::Utf8
            } else {
                DataType::Int64
            }
        };
        let int_second = |i: usize| {
            if i == 1 {
                DataType::Int64
            } else {
                DataType::Utf8
            }
        };
        let numbers = |args: Vec<Phys>, t: &DataType| -> Result<Vec<Phys>, ExprError> {
            args.into_iter()
                .enumerate()
                .map(|(i, a)| {
                    if a.data_type == DataType::Null || is_numeric(&a.data_type) {
                        Ok(coerce(a, t))
                    } else {
                        Err(self.type_error(format!(
                            "{name} expects a number for argument {}, found {}",
                            i + 1,
                            a.data_type
                        )))
                    }
                })
                .collect()
        };
        let (data_type, args, nullable) = match func {
            Func::Trim | Func::Ltrim | Func::Rtrim | Func::Replace => {
                (DataType::Utf8, strings(args)?, nullable)
            }
            Func::StartsWith | Func::EndsWith => (DataType::Boolean, strings(args)?, nullable),
            Func::Lpad | Func::Rpad => (DataType::Utf8, typed(args, &int_second)?, nullable),
            Func::Round => {
                let mut args = args.into_iter();
                let x = args.next().into_iter().collect::<Vec<_>>();
                let t = match x.first().map(|a| &a.data_type) {
                    Some(DataType::Float64) => DataType::Float64,
                    _ => DataType::Int64,
                };
                let mut all = numbers(x, &t)?;
                for (i, a) in args.enumerate() {
                    all.push(expect(i + 1, a, &DataType::Int64)?);
                }
                (t, all, nullable)
            }
            Func::Floor | Func::Ceil => {
                let t = match args.first().map(|a| &a.data_type) {
                    Some(DataType::Float64) => DataType::Float64,
                    _ => DataType::Int64,
                };
                // Like Spark: a BIGINT, NULL when the value does not fit.
                let float = t == DataType::Float64;
                (DataType::Int64, numbers(args, &t)?, nullable || float)
            }
            Func::Pow | Func::Sqrt | Func::Exp => (
                DataType::Float64,
                numbers(args, &DataType::Float64)?,
                nullable,
            ),
            // Like Spark: NULL for a value ≤ 0.
            Func::Ln => (DataType::Float64, numbers(args, &DataType::Float64)?, true),
            Func::Greatest | Func::Least => {
                let t = self.unify(&args, &format!("{name} arguments"))?;
                if t == DataType::Null {
                    return Ok(null_literal(&t));
                }
                if !matches!(
                    t,
                    DataType::Int64 | DataType::Float64 | DataType::Utf8 | DataType::Boolean
                ) {
                    return Err(self.type_error(format!("{name} cannot compare {t}")));
                }
                // NULLs are skipped: NULL only if every argument is.
                let nullable = args.iter().all(|a| a.nullable);
                (
                    t.clone(),
                    args.into_iter().map(|a| coerce(a, &t)).collect(),
                    nullable,
                )
            }
            Func::Md5 => (DataType::Utf8, strings(args)?, nullable),
            // Like Spark: NULL for a bit length it does not know.
            Func::Sha2 => (DataType::Utf8, typed(args, &int_second)?, true),
            Func::Hash => {
                for (i, a) in args.iter().enumerate() {
                    if !matches!(
                        a.data_type,
                        DataType::Int64
                            | DataType::Float64
                            | DataType::Utf8
                            | DataType::Boolean
                            | DataType::Null
                    ) {
                        return Err(self.type_error(format!(
                            "hash cannot hash argument {} of type {}",
                            i + 1,
                            a.data_type
                        )));
                    }
                }
                // NULLs are skipped: never NULL.
                (DataType::Int64, args, false)
            }
            Func::NullIf => {
                let t = self.unify(&args, "nullif arguments")?;
                if t == DataType::Null {
                    return Ok(null_literal(&t));
                }
                (
                    t.clone(),
                    args.into_iter().map(|a| coerce(a, &t)).collect(),
                    true,
                )
            }
            Func::Lower | Func::Upper | Func::Concat => (DataType::Utf8, strings(args)?, nullable),
            Func::Length => (DataType::Int64, strings(args)?, nullable),
            Func::Abs => {
                let a = args.into_iter().next();
                let Some(a) = a else {
                    return Err(self.type_error("abs expects 1 argument".into()));
                };
                let t = match &a.data_type {
                    DataType::Null => DataType::Int64,
                    t if is_numeric(t) => t.clone(),
                    t => {
                        return Err(self.type_error(format!(
                            "abs expects a number (Int64 or Float64), found {t}"
                        )))
                    }
                };
                (t.clone(), vec![coerce(a, &t)], nullable)
            }
            Func::Substr => (DataType::Utf8, typed(args, &string_then_ints)?, nullable),
        };
        Ok(node(Kind::Func { func, args, text }, data_type, nullable))
    }
}

/// The functions expressions may call, for error messages.
const SUPPORTED: &str = "lower, upper, length, abs, concat, substr, trim, ltrim, rtrim, replace, \
starts_with, ends_with, lpad, rpad, regexp_replace, regexp_extract, rlike, round, floor, ceil, \
pow, sqrt, ln, exp, greatest, least, coalesce, ifnull, nvl, nullif, md5, sha2, sha256, hash, \
json_extract";

impl Binder<'_> {
    /// Checks that function `name` got `min` to `max` arguments.
    fn arity(&self, name: &str, args: &[Logical], min: usize, max: usize) -> Result<(), ExprError> {
        if (min..=max).contains(&args.len()) {
            return Ok(());
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let expected = match (min, max) {
            (a, b) if a == b => format!("{a} argument{}", plural(a)),
            (a, usize::MAX) => format!("at least {a} argument{}", plural(a)),
            (a, b) => format!("{a} to {b} arguments"),
        };
        Err(self.type_error(format!("{name} expects {expected}, found {}", args.len())))
    }

    /// A function whose second argument is a regular expression: a string
    /// literal, compiled here once (Rust's `regex` syntax: no look-around
    /// or back-references; matching takes linear time).
    fn regex(
        &self,
        func: RegexFunc,
        name: &str,
        args: &[Logical],
        min: usize,
        max: usize,
    ) -> Result<Phys, ExprError> {
        self.arity(name, args, min, max)?;
        let Logical::Literal(Lit::Str(pattern)) = &args[1] else {
            return Err(self.type_error(format!(
                "{name} expects its pattern (argument 2) as a string literal, e.g. {name}(s, '[0-9]+'{})",
                if func == RegexFunc::Replace { ", ''" } else { "" }
            )));
        };
        let regex = RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .map_err(|e| self.type_error(format!("{name}: invalid pattern '{pattern}': {e}")))?;
        let mut bound = Vec::with_capacity(args.len() - 1);
        for (i, a) in args.iter().enumerate().filter(|(i, _)| *i != 1) {
            let a = self.bind_child(a)?;
            let t = if func == RegexFunc::Extract && i == 2 {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            if a.data_type != t && a.data_type != DataType::Null {
                return Err(self.type_error(format!(
                    "{name} expects {t} for argument {}, found {}",
                    i + 1,
                    a.data_type
                )));
            }
            bound.push(coerce(a, &t));
        }
        if func == RegexFunc::Extract {
            if let Some(Logical::Literal(Lit::Int(group))) = args.get(2) {
                if *group < 0 || *group as usize >= regex.captures_len() {
                    return Err(self.type_error(format!(
                        "regexp_extract: the pattern '{pattern}' has {} group(s), so group {group} does not exist",
                        regex.captures_len() - 1
                    )));
                }
            }
        }
        let nullable = bound.iter().any(|a| a.nullable);
        let data_type = match func {
            RegexFunc::Like => DataType::Boolean,
            RegexFunc::Replace | RegexFunc::Extract => DataType::Utf8,
        };
        Ok(node(
            Kind::Regex {
                func,
                regex: Arc::new(regex),
                args: bound,
                text: format!("{name}(...)"),
            },
            data_type,
            nullable,
        ))
    }
}

impl Binder<'_> {
    /// `json_extract(s, path)`: the path is a string literal, parsed here.
    fn json_extract(&self, name: &str, args: &[Logical]) -> Result<Phys, ExprError> {
        self.arity(name, args, 2, 2)?;
        let (text, path) = (&args[0], &args[1]);
        let Logical::Literal(Lit::Str(path)) = path else {
            return Err(self.type_error(format!(
                "{name} expects its path (argument 2) as a string literal, e.g. {name}(payload, '$.user.id')"
            )));
        };
        let parsed = JsonPath::parse(path)
            .map_err(|e| self.type_error(format!("{name}: invalid path '{path}': {e}")))?;
        let text = self.bind_child(text)?;
        if text.data_type != DataType::Utf8 && text.data_type != DataType::Null {
            return Err(self.type_error(format!(
                "{name} expects Utf8 for argument 1, found {}",
                text.data_type
            )));
        }
        Ok(node(
            Kind::JsonPath {
                path: Arc::new(parsed),
                arg: Box::new(coerce(text, &DataType::Utf8)),
            },
            DataType::Utf8,
            true,
        ))
    }
}

/// A short rendering of a logical node for error messages.
fn l_text(l: &Logical) -> String {
    match l {
        Logical::Binary { text, .. } => text.clone(),
        Logical::Function { name, .. } => format!("{name}(...)"),
        Logical::Neg(e) => format!("-({})", l_text(e)),
        Logical::Column(c) => c.clone(),
        _ => "expression".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse::parse;
    use arrow_schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("i", DataType::Int64, false),
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("k", dict_type(), false),
        ])
    }

    fn bind(sql: &str) -> Result<Phys, ExprError> {
        let s = schema();
        Binder::new(sql, &s).bind(&parse(sql)?)
    }

    fn ty(sql: &str) -> DataType {
        bind(sql).unwrap().data_type
    }

    #[test]
    fn literal_types() {
        assert_eq!(ty("1"), DataType::Int64);
        assert_eq!(ty("1.0"), DataType::Float64);
        assert_eq!(ty("'a'"), DataType::Utf8);
        assert_eq!(ty("true"), DataType::Boolean);
        assert_eq!(ty("null"), DataType::Null);
    }

    #[test]
    fn arithmetic_types() {
        assert_eq!(ty("i + 1"), DataType::Int64);
        assert_eq!(ty("i * i - 3 % 2"), DataType::Int64);
        assert_eq!(ty("i + 1.5"), DataType::Float64);
        assert_eq!(ty("f % i"), DataType::Float64);
        assert_eq!(ty("i / 2"), DataType::Float64);
        assert_eq!(ty("i + null"), DataType::Int64);
        assert_eq!(ty("-f"), DataType::Float64);
    }

    #[test]
    fn comparison_and_logic_types() {
        assert_eq!(ty("i < f"), DataType::Boolean);
        assert_eq!(ty("s = 'x'"), DataType::Boolean);
        assert_eq!(ty("k = s"), DataType::Boolean);
        assert_eq!(ty("b = true AND NOT b OR null"), DataType::Boolean);
        assert_eq!(ty("i BETWEEN 1 AND 2.5"), DataType::Boolean);
        assert_eq!(ty("s IN ('a', 'b')"), DataType::Boolean);
    }

    #[test]
    fn dictionary_subtrees() {
        // String results over a single dictionary column stay dictionaries.
        assert_eq!(ty("lower(k)"), dict_type());
        assert_eq!(ty("k"), dict_type());
        assert!(matches!(
            bind("k = 'x'").unwrap().kind,
            Kind::DictMap { .. }
        ));
        assert_eq!(ty("length(k)"), DataType::Int64);
        // Mixed with another column: unpacked.
        assert_eq!(ty("concat(k, s)"), DataType::Utf8);
    }

    #[test]
    fn case_coalesce_cast_function_types() {
        assert_eq!(ty("CASE WHEN b THEN 1 ELSE 2.5 END"), DataType::Float64);
        assert_eq!(ty("CASE WHEN b THEN 's' END"), DataType::Utf8);
        assert!(bind("CASE WHEN b THEN 's' END").unwrap().nullable);
        assert_eq!(ty("coalesce(f, i, 0)"), DataType::Float64);
        assert!(!bind("coalesce(f, 0)").unwrap().nullable);
        assert_eq!(ty("CAST(i AS STRING)"), DataType::Utf8);
        assert_eq!(ty("CAST(s AS BIGINT)"), DataType::Int64);
        assert_eq!(ty("CAST(s AS DOUBLE)"), DataType::Float64);
        assert_eq!(ty("CAST(i AS BOOLEAN)"), DataType::Boolean);
        assert_eq!(ty("length(s)"), DataType::Int64);
        assert_eq!(ty("abs(i)"), DataType::Int64);
        assert_eq!(ty("abs(f)"), DataType::Float64);
        assert_eq!(ty("substr(s, 1, 2)"), DataType::Utf8);
        assert_eq!(ty("s || 'x'"), DataType::Utf8);
    }

    #[test]
    fn nullability() {
        assert!(!bind("i + 1").unwrap().nullable);
        assert!(bind("i / 2").unwrap().nullable);
        assert!(bind("i % 2").unwrap().nullable);
        assert!(bind("f + 1").unwrap().nullable);
        assert!(!bind("s IS NULL").unwrap().nullable);
        assert!(bind("CAST(s AS BIGINT)").unwrap().nullable);
        assert!(!bind("CAST(i AS DOUBLE)").unwrap().nullable);
    }

    fn err(sql: &str) -> String {
        bind(sql).unwrap_err().to_string()
    }

    #[test]
    fn type_errors_name_expected_and_found() {
        let schema = Schema::new(vec![Field::new("name", DataType::Utf8, true)]);
        let sql = "name + 1";
        let e = Binder::new(sql, &schema)
            .bind(&parse(sql).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot apply '+' to Utf8 and Int64") && e.contains("\"name + 1\""),
            "{e}"
        );
        assert!(err("i = 'x'").contains("cannot apply '=' to Int64 and Utf8"));
        assert!(err("i AND b").contains("cannot apply 'AND' to Int64 and Boolean"));
        assert!(err("NOT i").contains("NOT expects Boolean, found Int64"));
        assert!(err("-s").contains("unary '-' to Utf8"));
        assert!(err("i LIKE 'a'").contains("LIKE expects a string operand, found Int64"));
        assert!(err("CASE WHEN b THEN 1 ELSE 'x' END")
            .contains("CASE branches must have the same type, found Int64 and Utf8"));
        assert!(err("CASE WHEN i THEN 1 END").contains("CASE WHEN condition expects Boolean"));
        assert!(err("coalesce(i, s)").contains("coalesce arguments must have the same type"));
        assert!(err("lower(i)").contains("lower expects Utf8 for argument 1, found Int64"));
        assert!(err("lower(s, s)").contains("lower expects 1 argument, found 2"));
        assert!(err("substr(s)").contains("substr expects 2 to 3 arguments, found 1"));
        assert!(err("abs(s)").contains("abs expects a number"));
        assert!(err("i IN (1, 'a')").contains("IN list item of type Utf8"));
        let e = bind("soundex(s)").unwrap_err();
        assert!(matches!(e, ExprError::Unsupported { .. }));
        assert!(e.to_string().contains("function soundex"), "{e}");
    }

    #[test]
    fn unknown_column_lists_available() {
        let e = err("amount > 1");
        assert!(e.contains("unknown column 'amount'"), "{e}");
        assert!(e.contains("i, f, s, b, k"), "{e}");
        assert!(e.contains("\"amount > 1\""), "{e}");
        // Identifiers are case-sensitive.
        assert!(err("I + 1").contains("unknown column 'I'"));
    }

    #[test]
    fn unsupported_column_type() {
        let schema = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        let e = Binder::new("d", &schema)
            .bind(&parse("d").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 'd' has unsupported type Date32"), "{e}");
    }
}

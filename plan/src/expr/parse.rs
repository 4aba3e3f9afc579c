//! Conversion of the sqlparser AST into Weir's small logical expression tree.
//!
//! Only the supported subset is translated; everything else is rejected with
//! [`ExprError::Unsupported`] naming the construct.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DataType as SqlType, DateTimeField, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, ObjectNamePart, TrimWhereField,
    UnaryOperator, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::ExprError;
use std::cell::Cell;
use weir_proto::spec::limits::{MAX_EXPRESSION_BYTES, MAX_EXPRESSION_DEPTH};

/// A literal value appearing in the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
}

/// Binary operators of the logical tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

impl BinOp {
    /// The SQL spelling of the operator, for error messages.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "=",
            BinOp::NotEq => "<>",
            BinOp::Lt => "<",
            BinOp::LtEq => "<=",
            BinOp::Gt => ">",
            BinOp::GtEq => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
        }
    }
}

/// Target types of `CAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastTarget {
    BigInt,
    Double,
    String,
    Boolean,
}

/// Logical expression tree: syntax only, not yet bound to a schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Logical {
    Column(String),
    Literal(Lit),
    Not(Box<Logical>),
    Neg(Box<Logical>),
    Binary {
        left: Box<Logical>,
        op: BinOp,
        right: Box<Logical>,
        /// SQL text of this sub-expression, used in runtime error messages.
        text: String,
    },
    IsNull {
        expr: Box<Logical>,
        negated: bool,
    },
    Between {
        expr: Box<Logical>,
        low: Box<Logical>,
        high: Box<Logical>,
        negated: bool,
    },
    InList {
        expr: Box<Logical>,
        list: Vec<Logical>,
        negated: bool,
    },
    Like {
        expr: Box<Logical>,
        pattern: Box<Logical>,
        negated: bool,
        case_insensitive: bool,
    },
    Case {
        whens: Vec<(Logical, Logical)>,
        else_result: Option<Box<Logical>>,
    },
    Cast {
        expr: Box<Logical>,
        target: CastTarget,
    },
    Function {
        /// Lower-cased function name.
        name: String,
        args: Vec<Logical>,
    },
}

impl Logical {
    /// Appends the referenced column names (first occurrence order, deduplicated).
    pub(crate) fn collect_columns(&self, out: &mut Vec<String>) {
        let push = |name: &String, out: &mut Vec<String>| {
            if !out.contains(name) {
                out.push(name.clone());
            }
        };
        match self {
            Logical::Column(name) => push(name, out),
            Logical::Literal(_) => {}
            Logical::Not(e) | Logical::Neg(e) => e.collect_columns(out),
            Logical::IsNull { expr, .. } => expr.collect_columns(out),
            Logical::Cast { expr, .. } => expr.collect_columns(out),
            Logical::Binary { left, right, .. } => {
                left.collect_columns(out);
                right.collect_columns(out);
            }
            Logical::Between {
                expr, low, high, ..
            } => {
                expr.collect_columns(out);
                low.collect_columns(out);
                high.collect_columns(out);
            }
            Logical::InList { expr, list, .. } => {
                expr.collect_columns(out);
                list.iter().for_each(|e| e.collect_columns(out));
            }
            Logical::Like { expr, pattern, .. } => {
                expr.collect_columns(out);
                pattern.collect_columns(out);
            }
            Logical::Case { whens, else_result } => {
                for (c, r) in whens {
                    c.collect_columns(out);
                    r.collect_columns(out);
                }
                if let Some(e) = else_result {
                    e.collect_columns(out);
                }
            }
            Logical::Function { args, .. } => args.iter().for_each(|e| e.collect_columns(out)),
        }
    }

    /// The referenced column names, deduplicated, in order of first occurrence.
    pub(crate) fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }
}

/// The start of an expression's text, for errors about its size.
fn excerpt(sql: &str) -> String {
    let mut out: String = sql.chars().take(60).collect();
    if out.len() < sql.len() {
        out.push_str("...");
    }
    out
}

/// Parses `sql` into a logical tree; an expression over
/// `max_expression_bytes` or `max_expression_depth` is refused before it
/// is parsed or converted any further.
pub(crate) fn parse(sql: &str) -> Result<Logical, ExprError> {
    if sql.len() > MAX_EXPRESSION_BYTES {
        return Err(ExprError::Limit {
            excerpt: excerpt(sql),
            message: format!(
                "size {} bytes exceeds the {MAX_EXPRESSION_BYTES}-byte limit (max_expression_bytes)",
                sql.len()
            ),
        });
    }
    let dialect = GenericDialect {};
    let expr = Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            // Reject trailing tokens such as `a b` or `a; drop`.
            let next = p.peek_token();
            if next.token != sqlparser::tokenizer::Token::EOF {
                return Err(sqlparser::parser::ParserError::ParserError(format!(
                    "unexpected trailing input starting at '{}'",
                    next.token
                )));
            }
            Ok(e)
        })
        .map_err(|e| ExprError::Parse {
            sql: sql.to_string(),
            message: e.to_string(),
        })?;
    Converter {
        sql,
        depth: Cell::new(0),
    }
    .convert(&expr)
}

struct Converter<'a> {
    sql: &'a str,
    /// How deep `convert` is: the depth of the tree built so far, which
    /// binding and evaluation later recurse as deep as.
    depth: Cell<usize>,
}

impl Converter<'_> {
    fn unsupported(&self, construct: impl Into<String>) -> ExprError {
        ExprError::Unsupported {
            sql: self.sql.to_string(),
            construct: construct.into(),
        }
    }

    fn boxed(&self, e: &Expr) -> Result<Box<Logical>, ExprError> {
        Ok(Box::new(self.convert(e)?))
    }

    fn number(&self, text: &str, negative: bool) -> Result<Logical, ExprError> {
        let full = if negative {
            format!("-{text}")
        } else {
            text.to_string()
        };
        let is_int = text.bytes().all(|b| b.is_ascii_digit());
        if is_int {
            return full
                .parse::<i64>()
                .map(|v| Logical::Literal(Lit::Int(v)))
                .map_err(|_| ExprError::Type {
                    sql: self.sql.to_string(),
                    message: format!("integer literal {full} does not fit in BIGINT"),
                });
        }
        match full.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Logical::Literal(Lit::Float(v))),
            _ => Err(ExprError::Type {
                sql: self.sql.to_string(),
                message: format!("invalid numeric literal {full}"),
            }),
        }
    }

    fn convert(&self, expr: &Expr) -> Result<Logical, ExprError> {
        let depth = self.depth.get() + 1;
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(ExprError::Limit {
                excerpt: excerpt(self.sql),
                message: format!(
                    "nesting deeper than the {MAX_EXPRESSION_DEPTH} limit (max_expression_depth); split it over several map steps"
                ),
            });
        }
        self.depth.set(depth);
        let converted = self.convert_node(expr);
        self.depth.set(depth - 1);
        converted
    }

    fn convert_node(&self, expr: &Expr) -> Result<Logical, ExprError> {
        Ok(match expr {
            Expr::Identifier(ident) => Logical::Column(ident.value.clone()),
            Expr::CompoundIdentifier(parts) => {
                let name: Vec<_> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(self.unsupported(format!(
                    "qualified column name '{}' (quote it as \"{}\" if the column name contains dots)",
                    name.join("."),
                    name.join(".")
                )));
            }
            Expr::Nested(inner) => self.convert(inner)?,
            Expr::Value(v) => Logical::Literal(match &v.value {
                Value::Number(n, long) => {
                    if *long {
                        return Err(self.unsupported("long literal suffix"));
                    }
                    return self.number(n, false);
                }
                Value::SingleQuotedString(s) => Lit::Str(s.clone()),
                Value::Boolean(b) => Lit::Bool(*b),
                Value::Null => Lit::Null,
                other => return Err(self.unsupported(format!("literal {other}"))),
            }),
            Expr::UnaryOp { op, expr: inner } => match op {
                UnaryOperator::Not => Logical::Not(self.boxed(inner)?),
                UnaryOperator::Minus => {
                    if let Expr::Value(v) = inner.as_ref() {
                        if let Value::Number(n, false) = &v.value {
                            return self.number(n, true);
                        }
                    }
                    Logical::Neg(self.boxed(inner)?)
                }
                UnaryOperator::Plus => {
                    // Unary plus is only valid on numbers; `+x` is `x + 0`
                    // typed, which keeps the type check in one place.
                    Logical::Binary {
                        left: self.boxed(inner)?,
                        op: BinOp::Add,
                        right: Box::new(Logical::Literal(Lit::Int(0))),
                        text: expr.to_string(),
                    }
                }
                other => return Err(self.unsupported(format!("unary operator {other}"))),
            },
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => BinOp::Add,
                    BinaryOperator::Minus => BinOp::Sub,
                    BinaryOperator::Multiply => BinOp::Mul,
                    BinaryOperator::Divide => BinOp::Div,
                    BinaryOperator::Modulo => BinOp::Rem,
                    BinaryOperator::Eq => BinOp::Eq,
                    BinaryOperator::NotEq => BinOp::NotEq,
                    BinaryOperator::Lt => BinOp::Lt,
                    BinaryOperator::LtEq => BinOp::LtEq,
                    BinaryOperator::Gt => BinOp::Gt,
                    BinaryOperator::GtEq => BinOp::GtEq,
                    BinaryOperator::And => BinOp::And,
                    BinaryOperator::Or => BinOp::Or,
                    BinaryOperator::StringConcat => {
                        return Ok(Logical::Function {
                            name: "concat".to_string(),
                            args: vec![self.convert(left)?, self.convert(right)?],
                        })
                    }
                    other => return Err(self.unsupported(format!("operator {other}"))),
                };
                Logical::Binary {
                    left: self.boxed(left)?,
                    op,
                    right: self.boxed(right)?,
                    text: expr.to_string(),
                }
            }
            Expr::IsNull(e) => Logical::IsNull {
                expr: self.boxed(e)?,
                negated: false,
            },
            Expr::IsNotNull(e) => Logical::IsNull {
                expr: self.boxed(e)?,
                negated: true,
            },
            Expr::Between {
                expr: e,
                negated,
                low,
                high,
            } => Logical::Between {
                expr: self.boxed(e)?,
                low: self.boxed(low)?,
                high: self.boxed(high)?,
                negated: *negated,
            },
            Expr::In {
                expr: e,
                target,
                negated,
                global,
            } => {
                if *global {
                    return Err(self.unsupported("GLOBAL IN"));
                }
                let list = match target {
                    InTarget::List(list) => list,
                    _ => return Err(self.unsupported("IN with a subquery or table")),
                };
                if list.is_empty() {
                    return Err(self.unsupported("empty IN list"));
                }
                Logical::InList {
                    expr: self.boxed(e)?,
                    list: list
                        .iter()
                        .map(|x| self.convert(x))
                        .collect::<Result<_, _>>()?,
                    negated: *negated,
                }
            }
            Expr::Like {
                negated,
                any,
                expr: e,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated,
                any,
                expr: e,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(self.unsupported("LIKE ANY"));
                }
                if escape_char.is_some() {
                    return Err(self.unsupported("LIKE ... ESCAPE"));
                }
                Logical::Like {
                    expr: self.boxed(e)?,
                    pattern: self.boxed(pattern)?,
                    negated: *negated,
                    case_insensitive: matches!(expr, Expr::ILike { .. }),
                }
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = operand.as_deref().map(|o| self.convert(o)).transpose()?;
                let mut whens = Vec::with_capacity(conditions.len());
                for w in conditions {
                    let cond = self.convert(&w.condition)?;
                    let cond = match &operand {
                        // Simple CASE: `CASE x WHEN v THEN ...` is `x = v`.
                        Some(op) => Logical::Binary {
                            left: Box::new(op.clone()),
                            op: BinOp::Eq,
                            right: Box::new(cond),
                            text: format!("CASE operand = {}", w.condition),
                        },
                        None => cond,
                    };
                    whens.push((cond, self.convert(&w.result)?));
                }
                Logical::Case {
                    whens,
                    else_result: else_result.as_deref().map(|e| self.boxed(e)).transpose()?,
                }
            }
            Expr::Cast {
                kind,
                expr: e,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return Err(self.unsupported("CAST ... FORMAT"));
                }
                match kind {
                    CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast => {}
                    CastKind::SafeCast => return Err(self.unsupported("SAFE_CAST")),
                }
                Logical::Cast {
                    expr: self.boxed(e)?,
                    target: self.cast_target(data_type)?,
                }
            }
            Expr::Substring {
                expr: e,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.convert(e)?];
                match substring_from {
                    Some(f) => args.push(self.convert(f)?),
                    // `SUBSTRING(s FOR n)` starts at 1; `substr(s)` is an
                    // arity error reported by the binder.
                    None if substring_for.is_some() => args.push(Logical::Literal(Lit::Int(1))),
                    None => {}
                }
                if let Some(f) = substring_for {
                    args.push(self.convert(f)?);
                }
                Logical::Function {
                    name: "substr".to_string(),
                    args,
                }
            }
            Expr::Function(f) => self.function(f)?,
            // The parser reads these as special forms; only the plain
            // function call is supported.
            Expr::Trim {
                trim_where,
                trim_what: None,
                expr: e,
                trim_characters: None,
            } => Logical::Function {
                name: match trim_where {
                    None | Some(TrimWhereField::Both) => "trim",
                    Some(TrimWhereField::Leading) => "ltrim",
                    Some(TrimWhereField::Trailing) => "rtrim",
                }
                .to_string(),
                args: vec![self.convert(e)?],
            },
            Expr::Floor {
                expr: e,
                field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            } => Logical::Function {
                name: "floor".to_string(),
                args: vec![self.convert(e)?],
            },
            Expr::Ceil {
                expr: e,
                field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            } => Logical::Function {
                name: "ceil".to_string(),
                args: vec![self.convert(e)?],
            },
            other => return Err(self.unsupported(describe(other))),
        })
    }

    fn cast_target(&self, t: &SqlType) -> Result<CastTarget, ExprError> {
        Ok(match t {
            SqlType::BigInt(_)
            | SqlType::Int(_)
            | SqlType::Integer(_)
            | SqlType::Int8(_)
            | SqlType::Int64 => CastTarget::BigInt,
            SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float64 | SqlType::Float8 => {
                CastTarget::Double
            }
            SqlType::String(_) | SqlType::Varchar(_) | SqlType::Text => CastTarget::String,
            SqlType::Boolean | SqlType::Bool => CastTarget::Boolean,
            other => return Err(self.unsupported(format!("CAST to {other}"))),
        })
    }

    fn function(&self, f: &Function) -> Result<Logical, ExprError> {
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident.value.clone(),
            _ => return Err(self.unsupported(format!("function name {}", f.name))),
        };
        let list = match &f.args {
            // Keywords like `user` parse as argument-less functions; treat
            // them as column references.
            FunctionArguments::None => return Ok(Logical::Column(name)),
            FunctionArguments::Subquery(_) => {
                return Err(self.unsupported(format!("subquery argument to {name}")))
            }
            FunctionArguments::List(list) => list,
        };
        if f.over.is_some() {
            return Err(self.unsupported(format!("window function {name}(...) OVER")));
        }
        if f.filter.is_some()
            || !f.within_group.is_empty()
            || f.null_treatment.is_some()
            || list.duplicate_treatment.is_some()
            || !list.clauses.is_empty()
            || !matches!(f.parameters, FunctionArguments::None)
        {
            return Err(self.unsupported(format!("modifiers in call to {name}")));
        }
        let mut args = Vec::with_capacity(list.args.len());
        for arg in &list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(self.convert(e)?),
                FunctionArg::Unnamed(_) => {
                    return Err(self.unsupported(format!("wildcard argument to {name}")))
                }
                _ => return Err(self.unsupported(format!("named argument to {name}"))),
            }
        }
        Ok(Logical::Function {
            name: name.to_ascii_lowercase(),
            args,
        })
    }
}

/// A short name for an unsupported AST node.
fn describe(e: &Expr) -> String {
    let text = e.to_string();
    let kind = match e {
        Expr::Subquery(_) | Expr::Exists { .. } => "subquery",
        Expr::IsTrue(_) | Expr::IsFalse(_) | Expr::IsNotTrue(_) | Expr::IsNotFalse(_) => {
            "IS [NOT] TRUE/FALSE"
        }
        Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => "IS [NOT] DISTINCT FROM",
        Expr::SimilarTo { .. } => "SIMILAR TO",
        Expr::RLike { .. } => "RLIKE/REGEXP",
        Expr::Extract { .. } => "EXTRACT",
        Expr::Trim { .. } => "TRIM",
        Expr::Tuple(_) => "tuple",
        Expr::TypedString(_) => "typed literal",
        Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => "wildcard",
        _ => "expression",
    };
    format!("{kind} `{text}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_columns() {
        assert_eq!(parse("42").unwrap(), Logical::Literal(Lit::Int(42)));
        assert_eq!(parse("-7").unwrap(), Logical::Literal(Lit::Int(-7)));
        assert_eq!(
            parse("-9223372036854775808").unwrap(),
            Logical::Literal(Lit::Int(i64::MIN))
        );
        assert_eq!(parse("1.5").unwrap(), Logical::Literal(Lit::Float(1.5)));
        assert_eq!(parse("1e3").unwrap(), Logical::Literal(Lit::Float(1000.0)));
        assert_eq!(
            parse("'x'").unwrap(),
            Logical::Literal(Lit::Str("x".into()))
        );
        assert_eq!(parse("TRUE").unwrap(), Logical::Literal(Lit::Bool(true)));
        assert_eq!(parse("null").unwrap(), Logical::Literal(Lit::Null));
        assert_eq!(parse("Amount").unwrap(), Logical::Column("Amount".into()));
        assert_eq!(
            parse("\"my col\"").unwrap(),
            Logical::Column("my col".into())
        );
        assert_eq!(parse("user").unwrap(), Logical::Column("user".into()));
        assert_eq!(parse("type").unwrap(), Logical::Column("type".into()));
    }

    #[test]
    fn integer_literal_out_of_range() {
        let err = parse("9223372036854775808").unwrap_err().to_string();
        assert!(err.contains("does not fit in BIGINT"), "{err}");
    }

    #[test]
    fn rejects_trailing_input_and_garbage() {
        assert!(matches!(parse("a b"), Err(ExprError::Parse { .. })));
        assert!(matches!(parse("a +"), Err(ExprError::Parse { .. })));
        assert!(matches!(parse(""), Err(ExprError::Parse { .. })));
        assert!(matches!(parse("(((("), Err(ExprError::Parse { .. })));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let err = parse("a IN (SELECT 1)").unwrap_err();
        assert!(matches!(err, ExprError::Unsupported { .. }));
        assert!(err.to_string().contains("subquery"), "{err}");
        let err = parse("t.a").unwrap_err();
        assert!(
            err.to_string().contains("qualified column name 't.a'"),
            "{err}"
        );
        let err = parse("a & b").unwrap_err();
        assert!(err.to_string().contains("operator &"), "{err}");
        let err = parse("CAST(a AS DATE)").unwrap_err();
        assert!(err.to_string().contains("CAST to DATE"), "{err}");
        let err = parse("count(*)").unwrap_err();
        assert!(
            err.to_string().contains("wildcard argument to count"),
            "{err}"
        );
        let err = parse("a LIKE 'x' ESCAPE '!'").unwrap_err();
        assert!(err.to_string().contains("ESCAPE"), "{err}");
    }

    #[test]
    fn simple_case_becomes_equality() {
        let l = parse("CASE a WHEN 1 THEN 'one' END").unwrap();
        match l {
            Logical::Case { whens, else_result } => {
                assert!(else_result.is_none());
                assert!(matches!(&whens[0].0, Logical::Binary { op: BinOp::Eq, .. }));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn columns_are_deduplicated_in_order() {
        let l = parse("b + a * b > coalesce(c, a)").unwrap();
        assert_eq!(l.columns(), vec!["b", "a", "c"]);
    }
}

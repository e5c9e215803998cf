//! Lowering sqlparser's AST to our tree: functions resolved, paths split,
//! literals parsed, LIKE patterns compiled, anything unsupported refused
//! with its line and column.

use sqlparser::ast::{
    AccessExpr, BinaryOperator, CeilFloorKind, DateTimeField, DuplicateTreatment, Expr as Ast,
    FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget, ObjectNamePart, SelectItem,
    SetExpr, Spanned, Subscript, UnaryOperator, Value as AstValue, WildcardAdditionalOptions,
};
use sqlparser::tokenizer::Location;

use super::SqlError;
use super::functions::Func;
use super::like::LikePattern;
use super::parse::error;
use super::tree::{Arith, Cmp, Column, Expr, Literal, Path, Pattern, Root, Step};
use super::value::Val;

/// Deepest expression a rule may have: evaluation recurses, and sqlparser
/// does not bound left-leaning chains like `a + b + c + …`.
pub const MAX_DEPTH: usize = 64;

/// What compiling found out about the rule as a whole.
pub(crate) struct Compiler {
    pub needs_attributes: bool,
    pub needs_defaults: bool,
    /// The start of the innermost expression entered that has a known
    /// position: where to point when a node has none of its own.
    near: Location,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler {
            needs_attributes: false,
            needs_defaults: false,
            near: Location::new(1, 1),
        }
    }
}

impl Compiler {
    pub fn column(&mut self, item: &SelectItem) -> Result<Column, SqlError> {
        match item {
            SelectItem::UnnamedExpr(ast) => {
                let expr = self.expr(ast, 0)?;
                let name = column_name(&expr, ast);
                Ok(Column::Named { name, expr })
            }
            SelectItem::ExprWithAlias { expr, alias } => Ok(Column::Named {
                name: alias.value.as_str().into(),
                expr: self.expr(expr, 0)?,
            }),
            SelectItem::ExprWithAliases { expr, .. } => {
                Err(error(self.start(expr), "a column takes one name: AS name"))
            }
            SelectItem::Wildcard(options) => {
                let WildcardAdditionalOptions {
                    wildcard_token,
                    opt_ilike,
                    opt_exclude,
                    opt_except,
                    opt_replace,
                    opt_rename,
                    opt_alias,
                } = options;
                if opt_ilike.is_some()
                    || opt_exclude.is_some()
                    || opt_except.is_some()
                    || opt_replace.is_some()
                    || opt_rename.is_some()
                    || opt_alias.is_some()
                {
                    return Err(error(
                        wildcard_token.0.span.start,
                        "`*` takes no options in rules",
                    ));
                }
                Ok(Column::Star)
            }
            SelectItem::QualifiedWildcard(_, options) => Err(error(
                options.wildcard_token.0.span.start,
                "only a bare `*` is supported (all of the payload's fields)",
            )),
        }
    }

    /// Where `ast` starts, or the nearest known place before it.
    fn start(&self, ast: &Ast) -> Location {
        let at = start_of(ast);
        if at.line == 0 { self.near } else { at }
    }

    pub fn expr(&mut self, ast: &Ast, depth: usize) -> Result<Expr, SqlError> {
        self.near = self.start(ast);
        if depth > MAX_DEPTH {
            return Err(error(
                self.near,
                format!("the expression is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let d = depth + 1;
        let boxed = |c: &mut Self, e: &Ast| c.expr(e, d).map(Box::new);
        Ok(match ast {
            Ast::Identifier(ident) => Expr::Path(self.path(ident, &[])?),
            Ast::CompoundIdentifier(parts) => {
                let Some((root, rest)) = parts.split_first() else {
                    return Err(error(self.start(ast), "empty name"));
                };
                let steps: Vec<Step> = rest
                    .iter()
                    .map(|i| Step::Key(i.value.as_str().into()))
                    .collect();
                Expr::Path(self.path(root, &steps)?)
            }
            Ast::CompoundFieldAccess { root, access_chain } => {
                Expr::Path(self.field_access(root, access_chain)?)
            }
            Ast::Value(v) => Expr::Literal(literal(&v.value, v.span.start)?),
            Ast::Nested(inner) => self.expr(inner, depth)?,
            Ast::UnaryOp { op, expr } => match op {
                UnaryOperator::Minus => negate(self.expr(expr, d)?),
                UnaryOperator::Plus => self.expr(expr, d)?,
                UnaryOperator::Not => Expr::Not(boxed(self, expr)?),
                _ => return Err(self.not_supported(ast)),
            },
            Ast::BinaryOp { left, op, right } => {
                let (l, r) = (boxed(self, left)?, boxed(self, right)?);
                match op {
                    BinaryOperator::Plus => Expr::Arith(Arith::Add, l, r),
                    BinaryOperator::Minus => Expr::Arith(Arith::Sub, l, r),
                    BinaryOperator::Multiply => Expr::Arith(Arith::Mul, l, r),
                    BinaryOperator::Divide => Expr::Arith(Arith::Div, l, r),
                    BinaryOperator::Modulo => Expr::Arith(Arith::Rem, l, r),
                    BinaryOperator::Eq => Expr::Cmp(Cmp::Eq, l, r),
                    BinaryOperator::NotEq => Expr::Cmp(Cmp::NotEq, l, r),
                    BinaryOperator::Lt => Expr::Cmp(Cmp::Lt, l, r),
                    BinaryOperator::LtEq => Expr::Cmp(Cmp::LtEq, l, r),
                    BinaryOperator::Gt => Expr::Cmp(Cmp::Gt, l, r),
                    BinaryOperator::GtEq => Expr::Cmp(Cmp::GtEq, l, r),
                    BinaryOperator::And => Expr::And(l, r),
                    BinaryOperator::Or => Expr::Or(l, r),
                    BinaryOperator::StringConcat => Expr::Call(Func::Concat, Box::new([*l, *r])),
                    _ => {
                        return Err(error(
                            self.start(right),
                            format!("the operator {op} is not supported in rules"),
                        ));
                    }
                }
            }
            Ast::IsNull(e) => Expr::IsNull {
                expr: boxed(self, e)?,
                negated: false,
            },
            Ast::IsNotNull(e) => Expr::IsNull {
                expr: boxed(self, e)?,
                negated: true,
            },
            Ast::In {
                expr,
                target: InTarget::List(list),
                negated,
                global: false,
            } => Expr::In {
                expr: boxed(self, expr)?,
                list: list
                    .iter()
                    .map(|e| self.expr(e, d))
                    .collect::<Result<_, _>>()?,
                negated: *negated,
            },
            Ast::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: boxed(self, expr)?,
                low: boxed(self, low)?,
                high: boxed(self, high)?,
                negated: *negated,
            },
            Ast::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            } => Expr::Like {
                expr: boxed(self, expr)?,
                pattern: self.pattern(pattern, escape_char.as_deref(), d)?,
                negated: *negated,
            },
            Ast::Case {
                case_token,
                operand,
                conditions,
                else_result,
                ..
            } => {
                let _ = case_token;
                Expr::Case {
                    operand: operand.as_deref().map(|e| boxed(self, e)).transpose()?,
                    branches: conditions
                        .iter()
                        .map(|c| Ok((self.expr(&c.condition, d)?, self.expr(&c.result, d)?)))
                        .collect::<Result<_, SqlError>>()?,
                    otherwise: else_result.as_deref().map(|e| boxed(self, e)).transpose()?,
                }
            }
            Ast::Function(f) => {
                let name_at = f.name.span().start;
                let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
                    return Err(error(name_at, format!("unknown function {}", f.name)));
                };
                let Some(func) = Func::lookup(&name.value) else {
                    return Err(error(name_at, format!("unknown function {}()", name.value)));
                };
                let extras = f.uses_odbc_syntax
                    || !matches!(f.parameters, FunctionArguments::None)
                    || !f.within_group.is_empty()
                    || f.filter.is_some()
                    || f.null_treatment.is_some()
                    || f.over.is_some();
                let args = match &f.args {
                    FunctionArguments::List(list)
                        if !extras
                            && list.clauses.is_empty()
                            && !matches!(
                                list.duplicate_treatment,
                                Some(DuplicateTreatment::Distinct)
                            ) =>
                    {
                        list.args
                            .iter()
                            .map(|arg| match arg {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                                _ => Err(error(
                                    name_at,
                                    format!(
                                        "{}() takes plain expressions as arguments",
                                        func.name()
                                    ),
                                )),
                            })
                            .collect::<Result<Vec<_>, _>>()?
                    }
                    FunctionArguments::None => {
                        return Err(error(
                            name_at,
                            format!("{}() needs its parentheses", func.name()),
                        ));
                    }
                    _ => {
                        return Err(error(
                            name_at,
                            format!("{}() takes plain expressions as arguments", func.name()),
                        ));
                    }
                };
                self.call(func, &args, name_at, d)?
            }
            // sqlparser reads these three functions as special forms.
            Ast::Floor { expr, field } | Ast::Ceil { expr, field } => {
                let func = if matches!(ast, Ast::Floor { .. }) {
                    Func::Floor
                } else {
                    Func::Ceil
                };
                if !matches!(
                    field,
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                ) {
                    return Err(error(
                        self.start(expr),
                        format!("{}() takes 1 argument", func.name()),
                    ));
                }
                self.call(func, &[expr.as_ref()], self.start(expr), d)?
            }
            Ast::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let args: Vec<&Ast> = std::iter::once(expr.as_ref())
                    .chain(substring_from.as_deref())
                    .chain(substring_for.as_deref())
                    .collect();
                self.call(Func::Substring, &args, self.start(expr), d)?
            }
            _ => return Err(self.not_supported(ast)),
        })
    }

    fn call(
        &mut self,
        func: Func,
        args: &[&Ast],
        at: Location,
        d: usize,
    ) -> Result<Expr, SqlError> {
        func.check_arity(args.len()).map_err(|m| error(at, m))?;
        let args = args
            .iter()
            .map(|e| self.expr(e, d))
            .collect::<Result<Box<[Expr]>, _>>()?;
        Ok(Expr::Call(func, args))
    }

    fn pattern(
        &mut self,
        pattern: &Ast,
        escape: Option<&Ast>,
        d: usize,
    ) -> Result<Pattern, SqlError> {
        let escape = match escape {
            None => None,
            Some(Ast::Value(v)) => match &v.value {
                AstValue::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next(),
                _ => return Err(error(v.span.start, "ESCAPE takes one character in quotes")),
            },
            Some(other) => {
                return Err(error(
                    self.start(other),
                    "ESCAPE takes one character in quotes",
                ));
            }
        };
        if let Ast::Value(v) = pattern
            && let AstValue::SingleQuotedString(s) = &v.value
        {
            let fixed = LikePattern::new(s, escape).map_err(|m| error(v.span.start, m))?;
            return Ok(Pattern::Fixed(fixed));
        }
        Ok(Pattern::Computed {
            pattern: Box::new(self.expr(pattern, d)?),
            escape,
        })
    }

    /// A name, then steps: `temp`, `payload.a.b`, `attributes.location`.
    fn path(&mut self, first: &Ident, rest: &[Step]) -> Result<Path, SqlError> {
        // Quoted names are always payload fields: `"payload"` is a field.
        let reserved = first.quote_style.is_none();
        let (root, mut steps) = match first.value.as_str() {
            "payload" if reserved => (Root::Payload, Vec::new()),
            "attributes" if reserved => {
                self.needs_attributes = true;
                (Root::Attributes, Vec::new())
            }
            "defaults" if reserved => {
                self.needs_defaults = true;
                (Root::Defaults, Vec::new())
            }
            name => (Root::Payload, vec![Step::Key(name.into())]),
        };
        steps.extend_from_slice(rest);
        Ok(Path {
            root,
            steps: steps.into(),
        })
    }

    /// `a.b['c'][0]`: dots and subscripts after a name.
    fn field_access(&mut self, root: &Ast, chain: &[AccessExpr]) -> Result<Path, SqlError> {
        let (first, mut steps): (&Ident, Vec<Step>) = match root {
            Ast::Identifier(i) => (i, Vec::new()),
            Ast::CompoundIdentifier(parts) if !parts.is_empty() => (
                &parts[0],
                parts[1..]
                    .iter()
                    .map(|i| Step::Key(i.value.as_str().into()))
                    .collect(),
            ),
            other => {
                return Err(error(
                    self.start(other),
                    "only a field can be followed by `.name` or `[…]`",
                ));
            }
        };
        for access in chain {
            let step = match access {
                AccessExpr::Dot(Ast::Identifier(i)) => Step::Key(i.value.as_str().into()),
                AccessExpr::Subscript(Subscript::Index {
                    index: Ast::Value(v),
                }) => match &v.value {
                    AstValue::SingleQuotedString(key) => Step::Key(key.as_str().into()),
                    AstValue::Number(n, _) => match n.parse::<usize>() {
                        Ok(i) => Step::Index(i),
                        Err(_) => {
                            return Err(error(
                                v.span.start,
                                "an array index is a whole number from 0",
                            ));
                        }
                    },
                    _ => return Err(error(v.span.start, "a subscript is a number or a 'name'")),
                },
                AccessExpr::Dot(other) => {
                    return Err(error(
                        self.start(other),
                        "a field name is expected after `.`",
                    ));
                }
                AccessExpr::Subscript(Subscript::Index { index }) => {
                    return Err(error(
                        self.start(index),
                        "a subscript is a literal number or 'name'",
                    ));
                }
                AccessExpr::Subscript(Subscript::Slice { .. }) => {
                    return Err(error(
                        self.start(root),
                        "array slices are not supported in rules",
                    ));
                }
            };
            steps.push(step);
        }
        self.path(first, &steps)
    }
}

fn literal(value: &AstValue, at: Location) -> Result<Literal, SqlError> {
    Ok(match value {
        AstValue::Null => Literal::Null,
        AstValue::Boolean(b) => Literal::Bool(*b),
        AstValue::SingleQuotedString(s) => Literal::Str(s.as_str().into()),
        AstValue::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                Literal::Int(i)
            } else {
                match n.parse::<f64>() {
                    Ok(f) if f.is_finite() => Literal::Float(f),
                    _ => return Err(error(at, format!("the number {n} is out of range"))),
                }
            }
        }
        other => {
            return Err(error(
                at,
                format!(
                    "the literal {other} is not supported in rules (use 'single quotes' for strings)"
                ),
            ));
        }
    })
}

/// `-literal` is folded, so that `-9223372036854775808` is an integer.
fn negate(e: Expr) -> Expr {
    match e {
        Expr::Literal(Literal::Int(i)) => match i.checked_neg() {
            Some(n) => Expr::Literal(Literal::Int(n)),
            None => Expr::Literal(Literal::Float(-(i as f64))),
        },
        Expr::Literal(Literal::Float(f)) => match Val::number(-f) {
            Val::Int(i) => Expr::Literal(Literal::Int(i)),
            _ => Expr::Literal(Literal::Float(-f)),
        },
        other => Expr::Neg(Box::new(other)),
    }
}

/// The name of a column without `AS`: a path's last name, a function's
/// name, else the expression as written.
fn column_name(expr: &Expr, ast: &Ast) -> Box<str> {
    match expr {
        Expr::Path(path) => path
            .steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Key(k) => Some(k.clone()),
                Step::Index(_) => None,
            })
            .unwrap_or_else(|| match path.root {
                Root::Payload => "payload".into(),
                Root::Attributes => "attributes".into(),
                Root::Defaults => "defaults".into(),
            }),
        Expr::Call(func, _) if !matches!(ast, Ast::BinaryOp { .. }) => func.name().into(),
        _ => ast.to_string().into(),
    }
}

impl Compiler {
    /// Names the construct without rendering it: its subtree may be deep.
    fn not_supported(&self, ast: &Ast) -> SqlError {
        let message = match ast {
            Ast::Subquery(_) | Ast::Exists { .. } => "subqueries are not supported in rules",
            Ast::In { .. } => "IN takes a list of values in rules, e.g. IN (1, 2)",
            Ast::Cast { .. } => "CAST is not supported in rules: use to_number() or to_string()",
            Ast::ILike { .. } => "ILIKE is not supported in rules: use lower(x) LIKE '…'",
            Ast::Like { .. } => "LIKE ANY is not supported in rules",
            Ast::Tuple(_) => "tuples are not supported in rules",
            Ast::Array(_) => "arrays are not supported in rules",
            Ast::UnaryOp { .. } => "this unary operator is not supported in rules",
            _ => "this expression is not supported in rules",
        };
        error(self.start(ast), message)
    }
}

/// Where an expression starts, following the left edge without recursion
/// (sqlparser's `span()` walks the whole subtree, which may be thousands
/// of levels deep); line 0 when it has no position of its own.
pub(crate) fn start_of(ast: &Ast) -> Location {
    let mut at = ast;
    loop {
        at = match at {
            Ast::Identifier(i) => return i.span.start,
            Ast::CompoundIdentifier(parts) => {
                return parts.first().map_or(Location::new(0, 0), |i| i.span.start);
            }
            Ast::Value(v) => return v.span.start,
            Ast::Function(f) => return f.name.span().start,
            Ast::Case { case_token, .. } => return case_token.0.span.start,
            Ast::CompoundFieldAccess { root, .. } => root,
            Ast::BinaryOp { left, .. } => left,
            Ast::IsNull(e) | Ast::IsNotNull(e) | Ast::Nested(e) => e,
            Ast::In { expr, .. }
            | Ast::Between { expr, .. }
            | Ast::Like { expr, .. }
            | Ast::ILike { expr, .. }
            | Ast::UnaryOp { expr, .. }
            | Ast::Cast { expr, .. }
            | Ast::SimilarTo { expr, .. }
            | Ast::RLike { expr, .. }
            | Ast::Collate { expr, .. }
            | Ast::Convert { expr, .. }
            | Ast::Named { expr, .. }
            | Ast::Ceil { expr, .. }
            | Ast::Floor { expr, .. }
            | Ast::Substring { expr, .. }
            | Ast::IsJson { expr, .. }
            | Ast::IsNormalized { expr, .. } => expr,
            Ast::IsTrue(e)
            | Ast::IsFalse(e)
            | Ast::IsNotTrue(e)
            | Ast::IsNotFalse(e)
            | Ast::IsUnknown(e)
            | Ast::IsNotUnknown(e)
            | Ast::IsDistinctFrom(e, _)
            | Ast::IsNotDistinctFrom(e, _)
            | Ast::AnyOp { left: e, .. }
            | Ast::AllOp { left: e, .. }
            | Ast::AtTimeZone { timestamp: e, .. }
            | Ast::JsonAccess { value: e, .. }
            | Ast::Prefixed { value: e, .. } => e,
            Ast::Tuple(items) => match items.first() {
                Some(e) => e,
                None => return Location::new(0, 0),
            },
            Ast::Array(array) => match array.elem.first() {
                Some(e) => e,
                None => return Location::new(0, 0),
            },
            Ast::TypedString(t) => return t.value.span.start,
            Ast::Wildcard(token) | Ast::QualifiedWildcard(_, token) => return token.0.span.start,
            Ast::Subquery(q) | Ast::Exists { subquery: q, .. } => {
                return match q.body.as_ref() {
                    SetExpr::Select(s) => s.select_token.0.span.start,
                    _ => Location::new(0, 0),
                };
            }
            _ => return Location::new(0, 0),
        };
    }
}

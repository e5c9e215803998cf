//! Evaluation of the compiled tree over one message.
//!
//! Semantics, SQL-like: null (also a missing field) makes comparisons and
//! arithmetic null; AND, OR and NOT are three-valued (a non-boolean counts
//! as unknown); values of different types are unequal and unordered.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::functions::call;
use super::like::LikePattern;
use super::tree::{Arith, Cmp, Expr, Literal, Path, Pattern, Root, Step};
use super::value::{Val, check_len, not};
use super::{EvalError, Input};

pub(crate) fn eval<'a>(expr: &'a Expr, input: &Input<'a>) -> Result<Val<'a>, EvalError> {
    Ok(match expr {
        Expr::Literal(lit) => match lit {
            Literal::Null => Val::Null,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Int(i) => Val::Int(*i),
            Literal::Float(f) => Val::Float(*f),
            Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
        },
        Expr::Path(path) => resolve(path, input).map_or(Val::Null, Val::from_json),
        Expr::Call(func, args) => call(*func, args, input)?,
        Expr::Neg(e) => match eval(e, input)? {
            Val::Int(i) => i.checked_neg().map_or(Val::number(-(i as f64)), Val::Int),
            Val::Float(f) => Val::Float(-f),
            _ => Val::Null,
        },
        Expr::Not(e) => not(eval(e, input)?.as_bool()),
        Expr::Arith(op, l, r) => arith(*op, eval(l, input)?, eval(r, input)?)?,
        Expr::Cmp(op, l, r) => {
            let (l, r) = (eval(l, input)?, eval(r, input)?);
            compare(*op, &l, &r).map_or(Val::Null, Val::Bool)
        }
        Expr::And(l, r) => {
            let l = eval(l, input)?.as_bool();
            if l == Some(false) {
                return Ok(Val::Bool(false));
            }
            match (l, eval(r, input)?.as_bool()) {
                (_, Some(false)) => Val::Bool(false),
                (Some(true), Some(true)) => Val::Bool(true),
                _ => Val::Null,
            }
        }
        Expr::Or(l, r) => {
            let l = eval(l, input)?.as_bool();
            if l == Some(true) {
                return Ok(Val::Bool(true));
            }
            match (l, eval(r, input)?.as_bool()) {
                (_, Some(true)) => Val::Bool(true),
                (Some(false), Some(false)) => Val::Bool(false),
                _ => Val::Null,
            }
        }
        Expr::IsNull { expr, negated } => Val::Bool(eval(expr, input)?.is_null() != *negated),
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let found = is_in(&eval(expr, input)?, list, input)?;
            if *negated {
                not(found)
            } else {
                found.map_or(Val::Null, Val::Bool)
            }
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = eval(expr, input)?;
            let above = ordered(&eval(low, input)?, &v);
            let below = ordered(&v, &eval(high, input)?);
            let inside = match (above, below) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            if *negated {
                not(inside)
            } else {
                inside.map_or(Val::Null, Val::Bool)
            }
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => {
            let matched = like(&eval(expr, input)?, pattern, input)?;
            if *negated {
                not(matched)
            } else {
                matched.map_or(Val::Null, Val::Bool)
            }
        }
        Expr::Case {
            operand,
            branches,
            otherwise,
        } => {
            let operand = match operand {
                Some(e) => Some(eval(e, input)?),
                None => None,
            };
            for (when, then) in branches.iter() {
                let w = eval(when, input)?;
                let hit = match &operand {
                    Some(o) => o.sql_eq(&w) == Some(true),
                    None => w.as_bool() == Some(true),
                };
                if hit {
                    return eval(then, input);
                }
            }
            match otherwise {
                Some(e) => eval(e, input)?,
                None => Val::Null,
            }
        }
    })
}

/// Follows a path in the message; `None` when anything on the way is
/// missing or of the wrong kind.
pub(crate) fn resolve<'a>(path: &Path, input: &Input<'a>) -> Option<&'a Value> {
    let mut at = match path.root {
        Root::Payload => input.payload,
        Root::Attributes => input.attributes?,
        Root::Defaults => input.defaults?,
    };
    for step in path.steps.iter() {
        at = match (step, at) {
            (Step::Key(k), Value::Object(map)) => map.get(k.as_ref())?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(at)
}

fn arith<'a>(op: Arith, l: Val<'a>, r: Val<'a>) -> Result<Val<'a>, EvalError> {
    if let (Val::Int(a), Val::Int(b)) = (&l, &r) {
        let (a, b) = (*a, *b);
        let exact = match op {
            Arith::Add => a.checked_add(b),
            Arith::Sub => a.checked_sub(b),
            Arith::Mul => a.checked_mul(b),
            Arith::Div | Arith::Rem if b == 0 => return Ok(Val::Null),
            // Exact only when it divides; `i64::MIN / -1` overflows to float.
            Arith::Div => match a.checked_rem(b) {
                Some(0) => a.checked_div(b),
                _ => None,
            },
            Arith::Rem => a.checked_rem(b),
        };
        if let Some(v) = exact {
            return Ok(Val::Int(v));
        }
    }
    if let (Val::Str(a), Val::Str(b), Arith::Add) = (&l, &r, op) {
        // `+` on two strings joins them, as in AWS IoT SQL.
        check_len(a.len().saturating_add(b.len()))?;
        return Ok(Val::Str(Cow::Owned([a.as_ref(), b.as_ref()].concat())));
    }
    let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else {
        return Ok(Val::Null);
    };
    Ok(match op {
        Arith::Add => Val::number(a + b),
        Arith::Sub => Val::number(a - b),
        Arith::Mul => Val::number(a * b),
        Arith::Div | Arith::Rem if b == 0.0 => Val::Null,
        Arith::Div => Val::number(a / b),
        Arith::Rem => Val::number(a % b),
    })
}

fn compare(op: Cmp, l: &Val<'_>, r: &Val<'_>) -> Option<bool> {
    match op {
        Cmp::Eq => l.sql_eq(r),
        Cmp::NotEq => l.sql_eq(r).map(|eq| !eq),
        Cmp::Lt => l.sql_cmp(r).map(Ordering::is_lt),
        Cmp::LtEq => l.sql_cmp(r).map(Ordering::is_le),
        Cmp::Gt => l.sql_cmp(r).map(Ordering::is_gt),
        Cmp::GtEq => l.sql_cmp(r).map(Ordering::is_ge),
    }
}

/// `a <= b`, unknown when they do not compare.
fn ordered(a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    a.sql_cmp(b).map(Ordering::is_le)
}

/// SQL's IN: true on a match; else unknown if anything compared unknown.
fn is_in<'a>(v: &Val<'_>, list: &'a [Expr], input: &Input<'a>) -> Result<Option<bool>, EvalError> {
    if v.is_null() {
        return Ok(None);
    }
    let mut unknown = false;
    for e in list {
        match v.sql_eq(&eval(e, input)?) {
            Some(true) => return Ok(Some(true)),
            Some(false) => {}
            None => unknown = true,
        }
    }
    Ok(if unknown { None } else { Some(false) })
}

/// LIKE on strings only; anything else is unknown.
fn like<'a>(
    v: &Val<'_>,
    pattern: &'a Pattern,
    input: &Input<'a>,
) -> Result<Option<bool>, EvalError> {
    let Val::Str(text) = v else {
        return Ok(None);
    };
    Ok(match pattern {
        Pattern::Fixed(p) => Some(p.matches(text)),
        Pattern::Computed { pattern, escape } => match eval(pattern, input)? {
            Val::Str(p) => {
                let p = LikePattern::new(&p, *escape).map_err(EvalError)?;
                Some(p.matches(text))
            }
            _ => None,
        },
    })
}

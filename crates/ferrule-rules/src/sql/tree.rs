//! The compiled form of a rule: a small tree of enums with functions
//! resolved and paths split at save time, so evaluation never looks at a
//! name.

use super::functions::Func;
use super::like::LikePattern;

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `payload…` and bare names (`temp` is `payload.temp`).
    Payload,
    /// `attributes…`: the device's attributes.
    Attributes,
    /// `defaults…`: the device profile's defaults.
    Defaults,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `.name` or `['name']`
    Key(Box<str>),
    /// `[3]`
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub root: Root,
    pub steps: Box<[Step]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
}

/// A LIKE pattern: compiled once when it is a literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pattern {
    Fixed(LikePattern),
    Computed {
        pattern: Box<Expr>,
        escape: Option<char>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal),
    Path(Path),
    Call(Func, Box<[Expr]>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Arith(Arith, Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    In {
        expr: Box<Expr>,
        list: Box<[Expr]>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Pattern,
        negated: bool,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`
    Case {
        operand: Option<Box<Expr>>,
        branches: Box<[(Expr, Expr)]>,
        otherwise: Option<Box<Expr>>,
    },
}

/// One item of the SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    /// `*`: the payload's fields (or `{"payload": …}` when not an object).
    Star,
    Named {
        name: Box<str>,
        expr: Expr,
    },
}

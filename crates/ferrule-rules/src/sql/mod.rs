//! The rule language: `SELECT … FROM 'filter'[, 'filter'…] [WHERE …]`,
//! parsed with sqlparser and compiled once, at save time, into our own
//! evaluator over the message's JSON payload.
//!
//! - [`parse`]: sqlparser, then the one SELECT's parts; errors with line and
//!   column.
//! - [`compile`]: the AST lowered to [`tree`], functions resolved
//!   ([`functions`]), paths split, LIKE patterns compiled ([`like`]).
//! - [`eval`]: the tree over one message, on borrowed [`value`]s.
//! - [`filter`]: the FROM topic filters, pre-split for matching.
//!
//! Semantics in short: a bare name is a payload field (`temp` is
//! `payload.temp`); `attributes.…` and `defaults.…` read the device's
//! attributes and its profile's defaults; anything missing is null. Null
//! makes arithmetic and comparisons null, AND/OR/NOT are three-valued, and
//! WHERE passes only when exactly true. Division by zero is null; `+` joins
//! two strings; integral results stay integers.

mod compile;
mod eval;
mod filter;
mod functions;
mod like;
mod parse;
mod tree;
mod value;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use self::compile::Compiler;
use self::eval::eval;
use self::filter::Filter;
use self::tree::{Column, Expr};

pub use self::compile::MAX_DEPTH;
pub use self::value::MAX_STRING_BYTES;

/// A compiled rule query.
#[derive(Debug, Clone)]
pub struct Program {
    sources: Vec<String>,
    filters: Box<[Filter]>,
    columns: Box<[Column]>,
    condition: Option<Expr>,
    needs_attributes: bool,
    needs_defaults: bool,
}

/// Why a rule's SQL was refused, with where (1-based line and column;
/// columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SqlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Why evaluating a rule on one message failed (a type error, a bad
/// argument): counted as the rule's error, the message flow goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// What a rule sees of one message.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub tenant: &'a str,
    pub topic: &'a str,
    /// The payload as JSON; a payload that is not JSON is a string.
    pub payload: &'a Value,
    pub client_id: Option<&'a str>,
    /// From `devices/{id}/…` or `$ferrule/devices/{id}/…`.
    pub device_id: Option<&'a str>,
    /// Server receive time, ms since the epoch.
    pub timestamp_ms: i64,
    /// The device's attributes (`attributes.x`), when the program needs them.
    pub attributes: Option<&'a Value>,
    /// The device profile's defaults (`defaults.x`), when needed.
    pub defaults: Option<&'a Value>,
}

/// Compiles a rule's SQL; the error names the line and column at fault.
pub fn compile(sql: &str) -> Result<Program, SqlError> {
    let parts = parse::parse(sql)?;
    let mut compiler = Compiler::default();
    let columns = parts
        .projection
        .iter()
        .map(|item| compiler.column(item))
        .collect::<Result<Box<[Column]>, _>>()?;
    let condition = parts
        .selection
        .as_ref()
        .map(|e| compiler.expr(e, 0))
        .transpose()?;
    let filters = parts.sources.iter().map(|s| Filter::new(s)).collect();
    Ok(Program {
        sources: parts.sources,
        filters,
        columns,
        condition,
        needs_attributes: compiler.needs_attributes,
        needs_defaults: compiler.needs_defaults,
    })
}

impl Program {
    /// The FROM topic filters.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Whether any FROM filter matches the topic.
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.filters.iter().any(|f| f.matches(topic))
    }

    /// Whether it reads `attributes…`: the engine then looks them up.
    pub fn needs_attributes(&self) -> bool {
        self.needs_attributes
    }

    /// Whether it reads `defaults…` (the device profile's defaults).
    pub fn needs_defaults(&self) -> bool {
        self.needs_defaults
    }

    /// The output column names in order, `*` for the payload's fields.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| match c {
            Column::Star => "*",
            Column::Named { name, .. } => name,
        })
    }

    /// The output columns when WHERE holds, `None` when it does not.
    pub fn evaluate(&self, input: &Input<'_>) -> Result<Option<Map<String, Value>>, EvalError> {
        let input = *input;
        if let Some(condition) = &self.condition
            && eval(condition, &input)?.as_bool() != Some(true)
        {
            return Ok(None);
        }
        let mut out = Map::new();
        for column in self.columns.iter() {
            match column {
                Column::Star => match input.payload {
                    Value::Object(fields) => {
                        out.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    other => {
                        out.insert("payload".to_owned(), other.clone());
                    }
                },
                Column::Named { name, expr } => {
                    let value = eval(expr, &input)?.into_json();
                    out.insert(name.to_string(), value);
                }
            }
        }
        Ok(Some(out))
    }
}

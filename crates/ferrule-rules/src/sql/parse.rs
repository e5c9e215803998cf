//! From SQL text to the parts of one `SELECT … FROM 'filter'… [WHERE …]`,
//! with sqlparser, refusing everything else with a line and column.

use sqlparser::ast::{
    GroupByExpr, ObjectNamePart, Query, Select, SelectItem, SetExpr, Spanned, Statement,
    TableFactor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use super::SqlError;
use crate::model::MAX_SQL_BYTES;

/// sqlparser's own bound on nesting (its default, made explicit): deeper
/// SQL is refused before it can exhaust the stack.
const PARSER_RECURSION_LIMIT: usize = 50;

/// The parts of the one SELECT that a rule is.
pub(crate) struct SelectParts {
    /// The FROM topic filters, checked.
    pub sources: Vec<String>,
    pub projection: Vec<SelectItem>,
    pub selection: Option<sqlparser::ast::Expr>,
}

pub(crate) fn error(at: Location, message: impl Into<String>) -> SqlError {
    // sqlparser uses line 0 for "no location": point at the start then.
    let (line, column) = if at.line == 0 {
        (1, 1)
    } else {
        (at.line, at.column.max(1))
    };
    SqlError {
        line,
        column,
        message: message.into(),
    }
}

pub(crate) fn parse(sql: &str) -> Result<SelectParts, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        let mut cut = MAX_SQL_BYTES;
        while !sql.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(error(
            location_of(sql, cut),
            format!(
                "the rule is {} bytes long, more than the limit of {MAX_SQL_BYTES}",
                sql.len()
            ),
        ));
    }
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(sql)
        .map_err(|e| parser_error(sql, e, None))?;
    let first = parser.peek_token().span.start;
    let statement = match parser.parse_statement() {
        Ok(s) => s,
        Err(e) => return Err(parser_error(sql, e, Some(parser.peek_token().span.start))),
    };
    while parser.consume_token(&Token::SemiColon) {}
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(error(
            next.span.start,
            "a rule is exactly one SELECT statement",
        ));
    }
    let Statement::Query(query) = statement else {
        return Err(error(first, "a rule is a SELECT statement"));
    };
    let select = plain_select(sql, *query, first)?;
    select_parts(sql, select)
}

/// sqlparser's messages end with " at Line: X, Column: Y" when it knows
/// where; else the parser's position, else the end of the text.
fn parser_error(sql: &str, e: ParserError, position: Option<Location>) -> SqlError {
    let text = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => {
            return error(
                position
                    .filter(|l| l.line > 0)
                    .unwrap_or_else(|| location_of(sql, sql.len())),
                "the expression is nested too deeply",
            );
        }
    };
    if let Some(i) = text.rfind(" at Line: ")
        && let Some(at) = read_location(&text[i + " at Line: ".len()..])
    {
        return error(at, &text[..i]);
    }
    let at = position
        .filter(|l| l.line > 0)
        .unwrap_or_else(|| location_of(sql, sql.len()));
    error(at, text)
}

/// Reads "X, Column: Y".
fn read_location(text: &str) -> Option<Location> {
    let (line, column) = text.split_once(", Column: ")?;
    Some(Location::new(
        line.trim().parse().ok()?,
        column.trim().parse().ok()?,
    ))
}

/// The 1-based line and column (in characters, as sqlparser counts) of a
/// byte offset.
pub(crate) fn location_of(sql: &str, offset: usize) -> Location {
    let before = sql.get(..offset).unwrap_or(sql);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Location::new(line as u64, column as u64)
}

/// Where a keyword first appears as a keyword (not in a string or a quoted
/// name): the AST keeps no position for GROUP, ORDER, LIMIT…
fn keyword_at(sql: &str, keywords: &[Keyword]) -> Option<Location> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .ok()?;
    tokens.iter().find_map(|t| match &t.token {
        Token::Word(w) if w.quote_style.is_none() && keywords.contains(&w.keyword) => {
            Some(t.span.start)
        }
        _ => None,
    })
}

fn unsupported(sql: &str, keywords: &[Keyword], fallback: Location, what: &str) -> SqlError {
    let at = keyword_at(sql, keywords).unwrap_or(fallback);
    error(at, format!("{what} is not supported in rules"))
}

fn plain_select(sql: &str, query: Query, first: Location) -> Result<Select, SqlError> {
    let Query {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = query;
    if with.is_some() {
        return Err(unsupported(sql, &[Keyword::WITH], first, "WITH"));
    }
    if order_by.is_some() {
        return Err(unsupported(sql, &[Keyword::ORDER], first, "ORDER BY"));
    }
    if limit_clause.is_some() || fetch.is_some() {
        let keywords = [Keyword::LIMIT, Keyword::OFFSET, Keyword::FETCH];
        return Err(unsupported(sql, &keywords, first, "LIMIT"));
    }
    if !locks.is_empty()
        || for_clause.is_some()
        || settings.is_some()
        || format_clause.is_some()
        || !pipe_operators.is_empty()
    {
        return Err(error(first, "a rule is a plain SELECT … FROM … [WHERE …]"));
    }
    match *body {
        SetExpr::Select(select) => Ok(*select),
        SetExpr::SetOperation { op, .. } => Err(unsupported(
            sql,
            &[
                Keyword::UNION,
                Keyword::EXCEPT,
                Keyword::INTERSECT,
                Keyword::MINUS,
            ],
            first,
            &op.to_string(),
        )),
        SetExpr::Query(_) => Err(error(first, "subqueries are not supported in rules")),
        _ => Err(error(first, "a rule is a SELECT statement")),
    }
}

fn select_parts(sql: &str, select: Select) -> Result<SelectParts, SqlError> {
    let at = select.select_token.0.span.start;
    if select.distinct.is_some() {
        return Err(unsupported(sql, &[Keyword::DISTINCT], at, "DISTINCT"));
    }
    if select.top.is_some() {
        return Err(unsupported(sql, &[Keyword::TOP], at, "TOP"));
    }
    if select.into.is_some() {
        return Err(unsupported(sql, &[Keyword::INTO], at, "INTO"));
    }
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, modifiers) => !exprs.is_empty() || !modifiers.is_empty(),
    };
    if grouped {
        return Err(unsupported(sql, &[Keyword::GROUP], at, "GROUP BY"));
    }
    if select.having.is_some() {
        return Err(unsupported(sql, &[Keyword::HAVING], at, "HAVING"));
    }
    if !select.sort_by.is_empty() {
        return Err(unsupported(sql, &[Keyword::SORT], at, "SORT BY"));
    }
    if select.optimizer_hints.is_empty()
        && select.select_modifiers.is_none()
        && select.exclude.is_none()
        && select.lateral_views.is_empty()
        && select.prewhere.is_none()
        && select.connect_by.is_empty()
        && select.cluster_by.is_empty()
        && select.distribute_by.is_empty()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && select.value_table_mode.is_none()
    {
        // The shape of a rule.
    } else {
        return Err(error(at, "a rule is a plain SELECT … FROM … [WHERE …]"));
    }
    if select.from.is_empty() {
        return Err(error(
            at,
            "a rule needs FROM and a topic filter, e.g. FROM 'devices/+/telemetry'",
        ));
    }
    let mut sources = Vec::with_capacity(select.from.len());
    for table in &select.from {
        if !table.joins.is_empty() {
            return Err(unsupported(sql, &[Keyword::JOIN], at, "JOIN"));
        }
        sources.push(source(sql, &table.relation, at)?);
    }
    Ok(SelectParts {
        sources,
        projection: select.projection,
        selection: select.selection,
    })
}

/// A FROM item must be a topic filter in single quotes, nothing more.
fn source(sql: &str, relation: &TableFactor, select_at: Location) -> Result<String, SqlError> {
    let refuse = |at: Location| {
        error(
            at,
            "FROM takes topic filters in single quotes, e.g. FROM 'devices/+/telemetry'",
        )
    };
    // No `relation.span()`: it walks the whole subtree, which may be deep.
    let TableFactor::Table {
        name,
        alias,
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_directives,
        inheritance,
    } = relation
    else {
        let at = match relation {
            TableFactor::Derived { subquery, .. } => match subquery.body.as_ref() {
                SetExpr::Select(s) => s.select_token.0.span.start,
                _ => select_at,
            },
            _ => keyword_at(sql, &[Keyword::FROM]).unwrap_or(select_at),
        };
        return Err(refuse(at));
    };
    let at = name.span().start;
    let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
        return Err(refuse(at));
    };
    let plain = alias.is_none()
        && args.is_none()
        && with_hints.is_empty()
        && version.is_none()
        && !with_ordinality
        && partitions.is_empty()
        && json_path.is_none()
        && sample.is_none()
        && index_directives.is_empty()
        && inheritance.is_none();
    if ident.quote_style != Some('\'') || !plain {
        return Err(refuse(at));
    }
    // A rule sees every message of its filters: a shared-subscription
    // group would mean nothing here.
    if ident.value.starts_with("$share/") {
        return Err(error(
            ident.span.start,
            "a rule's topic filter cannot be a shared subscription ($share/…)",
        ));
    }
    ferrule_core::topic::validate_filter(&ident.value).map_err(|e| {
        error(
            ident.span.start,
            format!("'{}' is not a valid topic filter: {e}", ident.value),
        )
    })?;
    Ok(ident.value.clone())
}

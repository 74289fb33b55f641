//! SQL statements for one write, built from quoted catalog names only. Values are bound as text
//! parameters and cast to the column's type.
//!
//! In every statement the existing row is `t`; [`Statement::incoming`] names the uploaded value
//! of a column, so the merge policy can add conditions such as
//! `t."updated_at" <= EXCLUDED."updated_at"`.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::convert::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Upsert { updates: bool },
    Update,
    Delete,
}

/// A statement for one write, with optional extra conditions.
#[derive(Debug, Clone)]
pub struct Statement {
    kind: Kind,
    head: String,
    conditions: Vec<String>,
    params: Vec<Option<String>>,
    incoming: HashMap<String, String>,
}

impl Statement {
    /// The SQL expression of the uploaded value of `column` (`EXCLUDED."c"` in an upsert, the
    /// cast parameter in an update), if the write sets it.
    pub fn incoming(&self, column: &str) -> Option<&str> {
        self.incoming.get(column).map(String::as_str)
    }

    /// Adds a condition the existing row `t` must meet for the write to happen (for an upsert:
    /// for the update of an existing row; a new row is always inserted).
    pub fn and_where(mut self, condition: impl Into<String>) -> Statement {
        self.conditions.push(condition.into());
        self
    }

    /// The SQL text.
    pub fn sql(&self) -> String {
        let mut sql = self.head.clone();
        let conditions = self
            .conditions
            .iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        match self.kind {
            Kind::Upsert { updates: false } => {}
            Kind::Upsert { updates: true } if !self.conditions.is_empty() => {
                sql.push_str(" WHERE ");
                sql.push_str(&conditions);
            }
            Kind::Upsert { .. } => {}
            Kind::Update | Kind::Delete if !self.conditions.is_empty() => {
                sql.push_str(" AND ");
                sql.push_str(&conditions);
            }
            Kind::Update | Kind::Delete => {}
        }
        sql
    }

    /// Runs the statement; returns the number of rows written.
    pub async fn execute(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let params: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p as &(dyn ToSql + Sync))
            .collect();
        tx.execute(self.sql().as_str(), &params).await
    }
}

fn id_param(write: &Write<'_>) -> Option<String> {
    write
        .table
        .id_column()
        .map(|c| format!("$1::text::{}", c.sql_type))
}

/// `INSERT … ON CONFLICT (id) DO UPDATE SET <every given column> = EXCLUDED.<column>`.
pub fn upsert(write: &Write<'_>) -> Option<Statement> {
    let id_col = write.table.id_column()?;
    let mut columns = vec![id_col.quoted.clone()];
    let mut values = vec![id_param(write)?];
    let mut params = vec![Some(write.id.clone())];
    let mut sets = Vec::new();
    let mut incoming = HashMap::new();
    for (i, v) in write.values.iter().enumerate() {
        columns.push(v.column.quoted.clone());
        values.push(format!("${}::text::{}", i + 2, v.column.sql_type));
        params.push(v.value.clone());
        sets.push(format!("{0} = EXCLUDED.{0}", v.column.quoted));
        incoming.insert(
            v.column.name.clone(),
            format!("EXCLUDED.{}", v.column.quoted),
        );
    }
    let conflict = if sets.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", sets.join(", "))
    };
    Some(Statement {
        kind: Kind::Upsert {
            updates: !sets.is_empty(),
        },
        head: format!(
            "INSERT INTO {} AS t ({}) VALUES ({}) ON CONFLICT ({}) {conflict}",
            write.table.quoted,
            columns.join(", "),
            values.join(", "),
            id_col.quoted,
        ),
        conditions: Vec::new(),
        params,
        incoming,
    })
}

/// `UPDATE … SET <given columns> WHERE id = …`; `None` when no column is given.
pub fn update(write: &Write<'_>) -> Option<Statement> {
    let id_col = write.table.id_column()?;
    if write.values.is_empty() {
        return None;
    }
    let mut params = vec![Some(write.id.clone())];
    let mut sets = Vec::new();
    let mut incoming = HashMap::new();
    for (i, v) in write.values.iter().enumerate() {
        let expr = format!("${}::text::{}", i + 2, v.column.sql_type);
        sets.push(format!("{} = {expr}", v.column.quoted));
        incoming.insert(v.column.name.clone(), expr);
        params.push(v.value.clone());
    }
    Some(Statement {
        kind: Kind::Update,
        head: format!(
            "UPDATE {} AS t SET {} WHERE t.{} = {}",
            write.table.quoted,
            sets.join(", "),
            id_col.quoted,
            id_param(write)?,
        ),
        conditions: Vec::new(),
        params,
        incoming,
    })
}

/// `DELETE … WHERE id = …`.
pub fn delete(write: &Write<'_>) -> Option<Statement> {
    let id_col = write.table.id_column()?;
    Some(Statement {
        kind: Kind::Delete,
        head: format!(
            "DELETE FROM {} AS t WHERE t.{} = {}",
            write.table.quoted,
            id_col.quoted,
            id_param(write)?,
        ),
        conditions: Vec::new(),
        params: vec![Some(write.id.clone())],
        incoming: HashMap::new(),
    })
}

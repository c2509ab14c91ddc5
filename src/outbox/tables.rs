//! [`OutboxTables`]: the outbox and dead-letter tables of one database, their
//! SQL, and whether they were created yet.

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::settings::{check_table, OutboxConfigError};
use crate::transactional::Engine;

/// The outbox of one database: its table names and SQL, shared by the
/// pipeline (which enqueues) and every relay on it.
#[derive(Clone, Debug)]
pub(crate) struct OutboxTables {
    pub(crate) table: Arc<str>,
    pub(crate) dead: Arc<str>,
    pub(crate) sql: Arc<Statements>,
    pub(crate) migrated: Arc<OnceCell<()>>,
}

/// The SQL of each outbox operation, for one engine.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) migrate: String,
    pub(crate) enqueue: String,
    pub(crate) claim: String,
    pub(crate) succeed: String,
    pub(crate) retry: String,
    /// PostgreSQL: one statement; SQLite: the insert of `bury_delete`'s row.
    pub(crate) bury: String,
    /// SQLite only: the delete after `bury`.
    #[cfg(feature = "sqlite")]
    pub(crate) bury_delete: String,
    pub(crate) purge: String,
}

impl OutboxTables {
    /// The tables named `table` and `{table}_dead` on `engine`.
    pub(crate) fn new(table: &str, engine: &Engine) -> Result<Self, OutboxConfigError> {
        let sql = match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres(_) => {
                check_table(table, true)?;
                super::postgres::statements(table)
            }
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(_) => {
                check_table(table, false)?;
                super::sqlite::statements(table)
            }
        };
        Ok(Self {
            table: table.into(),
            dead: format!("{table}_dead").into(),
            sql: Arc::new(sql),
            migrated: Arc::new(OnceCell::new()),
        })
    }
}

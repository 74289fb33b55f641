//! Who may write what (the app's rules; see CONTRACT.md):
//!
//! - `lists`: only the owner writes; a `PUT` must set `owner_id` to the uploader, and a list
//!   cannot be given away. `owner_username` is filled in by the server from `users`.
//! - `todos`: the owner of the todo's list or a member of it. The authorship columns are the
//!   server's: `created_by` is the uploader on a new todo and never changes after;
//!   `completed_by` is the uploader when a write sets `completed` to true, NULL when it sets it
//!   to false, and unchanged otherwise — whatever the client sent for them.
//! - `list_members`: the list owner adds, changes and removes members; a member may delete their
//!   own row (leave the list). `username` is filled in by the server from `users`.
//!
//! Checks run inside the batch's transaction, entry by entry, so an entry sees the rows written
//! by the entries before it (a new list, then its todos). The row a write touches is locked
//! (`FOR UPDATE`) so a concurrent batch cannot change its owner between check and write.
//! A table without a rule here cannot be written: add a `match` arm when you add a synced table.

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::UploadError;
use super::convert::Write;
use super::entry::Op;

fn forbidden(write: &Write<'_>, reason: impl Into<String>) -> UploadError {
    UploadError::Forbidden {
        index: write.index,
        table: write.table.name.clone(),
        reason: reason.into(),
    }
}

/// Refuses the write unless `user` may make it; may fill in server-owned columns.
pub async fn authorize(
    tx: &Transaction<'_>,
    user: Uuid,
    write: &mut Write<'_>,
) -> Result<(), UploadError> {
    match write.table.name.as_str() {
        "lists" => lists(tx, user, write).await,
        "todos" => todos(tx, user, write).await,
        "list_members" => list_members(tx, user, write).await,
        other => Err(forbidden(
            write,
            format!("table {other} has no write rule (add one in upload/authorize.rs)"),
        )),
    }
}

fn db(write: &Write<'_>) -> impl FnOnce(tokio_postgres::Error) -> UploadError {
    let index = write.index;
    move |source| UploadError::database(index, source)
}

/// Parses a uuid the conversion step already checked (`None` for NULL or a non-uuid column).
fn as_uuid(value: Option<&str>) -> Option<Uuid> {
    value.and_then(|v| Uuid::parse_str(v).ok())
}

async fn list_owner(
    tx: &Transaction<'_>,
    write: &Write<'_>,
    list_id: Uuid,
    lock: bool,
) -> Result<Option<Uuid>, UploadError> {
    let sql = if lock {
        "SELECT owner_id FROM lists WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT owner_id FROM lists WHERE id = $1 FOR SHARE"
    };
    let row = tx.query_opt(sql, &[&list_id]).await.map_err(db(write))?;
    Ok(row.map(|r| r.get(0)))
}

/// The list's owner or a member of it.
async fn can_write_list(
    tx: &Transaction<'_>,
    write: &Write<'_>,
    user: Uuid,
    list_id: Uuid,
) -> Result<bool, UploadError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM lists WHERE id = $1 AND owner_id = $2)
                 OR EXISTS (SELECT 1 FROM list_members WHERE list_id = $1 AND user_id = $2)",
            &[&list_id, &user],
        )
        .await
        .map_err(db(write))?;
    Ok(row.get(0))
}

async fn lists(tx: &Transaction<'_>, user: Uuid, write: &mut Write<'_>) -> Result<(), UploadError> {
    let id = as_uuid(Some(&write.id)).ok_or_else(|| forbidden(write, "malformed list id"))?;
    let existing_owner = list_owner(tx, write, id, true).await?;
    if let Some(owner) = existing_owner
        && owner != user
    {
        return Err(forbidden(
            write,
            format!("list {id} belongs to another user"),
        ));
    }
    match write.op {
        Op::Put => {
            if as_uuid(write.value("owner_id").flatten()) != Some(user) {
                return Err(forbidden(
                    write,
                    "a new or replaced list must have owner_id = your user id",
                ));
            }
            // The server, not the client, says what the owner's username is.
            let username: Option<String> = tx
                .query_opt("SELECT username FROM users WHERE id = $1", &[&user])
                .await
                .map_err(db(write))?
                .map(|r| r.get(0));
            write.unset("owner_username");
            write.set("owner_username", username);
        }
        Op::Patch => {
            if let Some(owner) = write.value("owner_id")
                && as_uuid(owner) != Some(user)
            {
                return Err(forbidden(write, "a list cannot be given to another user"));
            }
            write.unset("owner_username");
        }
        Op::Delete => {}
    }
    Ok(())
}

async fn todos(tx: &Transaction<'_>, user: Uuid, write: &mut Write<'_>) -> Result<(), UploadError> {
    let id = as_uuid(Some(&write.id)).ok_or_else(|| forbidden(write, "malformed todo id"))?;
    let existing: Option<Uuid> = tx
        .query_opt("SELECT list_id FROM todos WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .map_err(db(write))?
        .map(|r| r.get(0));
    if let Some(list_id) = existing
        && !can_write_list(tx, write, user, list_id).await?
    {
        return Err(forbidden(
            write,
            format!("todo {id} is in list {list_id}, which is not yours nor shared with you"),
        ));
    }
    if write.op == Op::Delete || (write.op == Op::Patch && existing.is_none()) {
        return Ok(());
    }
    if let Some(new_list) = write.value("list_id") {
        // NULL (no uuid) is left to the NOT NULL constraint.
        if let Some(list_id) = as_uuid(new_list)
            && !can_write_list(tx, write, user, list_id).await?
        {
            return Err(forbidden(
                write,
                format!("list {list_id} does not exist or is not yours nor shared with you"),
            ));
        }
    } else if write.op == Op::Put && existing.is_none() {
        return Err(forbidden(write, "a new todo must name its list_id"));
    }
    set_authorship(write, user, existing.is_none());
    Ok(())
}

/// `todos.created_by` and `completed_by` from the uploader, not from the client.
fn set_authorship(write: &mut Write<'_>, user: Uuid, new_row: bool) {
    write.unset("created_by");
    if new_row {
        write.set("created_by", Some(user.to_string()));
    }
    let completed_by = match write.value("completed") {
        None => None,
        Some(Some("true")) => Some(Some(user.to_string())),
        Some(_) => Some(None),
    };
    write.unset("completed_by");
    if let Some(value) = completed_by {
        write.set("completed_by", value);
    }
}

async fn list_members(
    tx: &Transaction<'_>,
    user: Uuid,
    write: &mut Write<'_>,
) -> Result<(), UploadError> {
    let id = as_uuid(Some(&write.id)).ok_or_else(|| forbidden(write, "malformed member id"))?;
    let existing: Option<(Uuid, Uuid)> = tx
        .query_opt(
            "SELECT list_id, user_id FROM list_members WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db(write))?
        .map(|r| (r.get(0), r.get(1)));
    let owns = |owner: Option<Uuid>| owner == Some(user);
    if let Some((list_id, member)) = existing {
        let owner = list_owner(tx, write, list_id, false).await?;
        let leaving = write.op == Op::Delete && member == user;
        if !owns(owner) && !leaving {
            return Err(forbidden(
                write,
                format!("only the owner of list {list_id} can change its members"),
            ));
        }
    }
    if write.op == Op::Delete || (write.op == Op::Patch && existing.is_none()) {
        return Ok(());
    }
    if let Some(new_list) = write.value("list_id") {
        if let Some(list_id) = as_uuid(new_list)
            && !owns(list_owner(tx, write, list_id, false).await?)
        {
            return Err(forbidden(
                write,
                format!("only the owner of list {list_id} can add members to it"),
            ));
        }
    } else if existing.is_none() {
        return Err(forbidden(write, "a new member row must name its list_id"));
    }
    // The server, not the client, says what a member's username is.
    write.unset("username");
    if let Some(member) = write.value("user_id") {
        let username = match as_uuid(member) {
            Some(member) => {
                let row = tx
                    .query_opt("SELECT username FROM users WHERE id = $1", &[&member])
                    .await
                    .map_err(db(write))?;
                match row {
                    Some(row) => Some(row.get::<_, String>(0)),
                    None => {
                        return Err(UploadError::InvalidValue {
                            index: write.index,
                            table: write.table.name.clone(),
                            column: "user_id".into(),
                            message: format!("no user has id {member}"),
                        });
                    }
                }
            }
            None => None,
        };
        write.set("username", username);
    }
    Ok(())
}

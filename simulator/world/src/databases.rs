//! Databases of one test each: fresh and empty, or cloned from a template that is filled (with
//! migrations, typically) once per world; dropped with their [`TestDatabase`] on external servers.

use std::future::Future;

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};

use super::{Pg, World, WorldError};

impl World {
    async fn admin(&self) -> Result<sqlx::PgConnection, WorldError> {
        let url = self.postgres_url()?;
        Ok(sqlx::PgConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?)
    }

    /// A fresh, empty database of the caller's own.
    pub async fn database(&self) -> Result<TestDatabase, WorldError> {
        self.create_database(None).await
    }

    /// A fresh database cloned from the template `template`, which `setup` fills (with migrations,
    /// typically) the first time it is asked for. Cloning is much faster than migrating each time.
    pub async fn database_from<F, Fut>(
        &self,
        template: &str,
        setup: F,
    ) -> Result<TestDatabase, WorldError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        check_identifier(template)?;
        {
            let mut prepared = self.templates.lock().await;
            if !prepared.contains(template) {
                let mut admin = self.admin().await?;
                admin
                    .execute(
                        format!("DROP DATABASE IF EXISTS \"{template}\" WITH (FORCE)").as_str(),
                    )
                    .await
                    .context("dropping an old template")?;
                admin
                    .execute(format!("CREATE DATABASE \"{template}\"").as_str())
                    .await
                    .context("creating a template database")?;
                let _ = admin.close().await;
                setup(self.url_of(template)?)
                    .await
                    .with_context(|| format!("filling template {template}"))?;
                prepared.insert(template.to_owned());
            }
        }
        self.create_database(Some(template)).await
    }

    fn url_of(&self, database: &str) -> Result<String, WorldError> {
        let admin = self.postgres_url()?;
        let mut url = url_with_database(admin, database);
        if url.is_empty() {
            url = format!("{admin}/{database}");
        }
        Ok(url)
    }

    async fn create_database(&self, template: Option<&str>) -> Result<TestDatabase, WorldError> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        let mut admin = self.admin().await?;
        // Two clones of one template at the same instant can collide on the template's lock.
        let mut tries = 0;
        loop {
            match admin.execute(sql.as_str()).await {
                Ok(_) => break,
                Err(e)
                    if tries < 20 && e.to_string().contains("is being accessed by other users") =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(25 * tries)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context("creating a test database")
                        .into())
                }
            }
        }
        let _ = admin.close().await;
        let external = matches!(
            self.pg
                .as_ref()
                .map(|pg| pg.try_lock().map(|g| matches!(*g, Pg::External(_)))),
            Some(Ok(true))
        );
        Ok(TestDatabase {
            url: self.url_of(&name)?,
            admin_url: external.then(|| self.pg_admin_url.clone()).flatten(),
            name,
        })
    }
}

/// One database of one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name, `test_<uuid>`.
    name: String,
    /// Its URL.
    url: String,
    /// Set for databases on an external server, which are dropped with this value.
    admin_url: Option<String>,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL to connect to it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A local server's databases vanish with the world; an external server keeps what we do
        // not drop, so drop it here, on a thread of its own because Drop cannot await.
        let Some(admin) = self.admin_url.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::Builder::new().spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                        )
                        .await;
                }
            });
        });
    }
}

/// Replaces the database path of a `postgres://` URL, keeping its query string.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let Some(scheme_end) = base.find("://") else {
        return String::new();
    };
    let authority_end = base[scheme_end + 3..]
        .find('/')
        .map(|i| scheme_end + 3 + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn check_identifier(name: &str) -> Result<(), WorldError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(
            anyhow::anyhow!("template name {name:?} must be 1-63 characters of [A-Za-z0-9_]")
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_query_kept() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5", "t1"),
            "postgres://h:5/t1"
        );
    }

    #[test]
    fn template_names_are_plain_identifiers() {
        assert!(check_identifier("booking_v1").is_ok());
        assert!(check_identifier("x\"; DROP").is_err());
        assert!(check_identifier("").is_err());
    }
}

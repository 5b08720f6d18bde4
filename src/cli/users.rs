//! `hearback users create`: the people who handle cases.

use super::CliError;
use crate::config::Config;
use crate::server;
use crate::storage::NewUser;
use crate::time::Timestamp;
use crate::units::UnitCode;
use argon2::password_hash::PasswordHasher;
use std::io::Read;

/// What `users create` was given.
pub struct UserArgs {
    pub email: String,
    pub role: String,
    pub unit: Option<String>,
    pub name: Option<String>,
    pub password_stdin: bool,
}

pub async fn create_user(config: &Config, args: UserArgs) -> Result<(), CliError> {
    let email = args.email.trim().to_string();
    if email.parse::<lettre::Address>().is_err() {
        return Err(CliError::Usage(format!(
            "--email '{email}' is not an e-mail address"
        )));
    }
    if !matches!(args.role.as_str(), "admin" | "manager" | "agent") {
        return Err(CliError::Usage(format!(
            "--role '{}' is not one of admin, manager, agent",
            args.role
        )));
    }
    if args.role != "admin" && args.unit.is_none() {
        return Err(CliError::Usage(
            "a manager or an agent belongs to a unit: give --unit CODE".into(),
        ));
    }
    let password_hash = if args.password_stdin {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .map_err(|e| CliError::Failed(format!("cannot read the password: {e}")))?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.chars().count() < 12 {
            return Err(CliError::Usage(
                "the password must be at least 12 characters long".into(),
            ));
        }
        Some(hash_password(password)?)
    } else {
        None
    };
    let storage = server::open_storage(config, false).await?;
    let outcome = async {
        let unit_id = match &args.unit {
            None => None,
            Some(code) => {
                let code = UnitCode::parse(code)
                    .map_err(|e| CliError::Usage(format!("--unit '{code}': {e}")))?;
                let id = storage.unit_id(code.as_str()).await?.ok_or_else(|| {
                    CliError::Usage(format!("no unit has the code '{}'", code.as_str()))
                })?;
                Some(id)
            }
        };
        let user = storage
            .create_user(
                &NewUser {
                    email,
                    name: args.name,
                    role: args.role,
                    unit_id,
                    password_hash,
                },
                Timestamp::now(),
            )
            .await?;
        println!(
            "{}",
            serde_json::json!({ "id": user.id, "email": user.email, "role": user.role })
        );
        Ok::<_, CliError>(())
    }
    .await;
    storage.close().await;
    outcome
}

/// An argon2id PHC string, with a random salt.
fn hash_password(password: &str) -> Result<String, CliError> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| CliError::Failed(format!("cannot hash the password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn a_password_is_kept_as_an_argon2id_hash_that_verifies_it_and_nothing_else() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = argon2::password_hash::phc::PasswordHash::new(&hash).unwrap();
        let argon = argon2::Argon2::default();
        assert!(
            argon
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(
            argon
                .verify_password(b"correct horse battery!", &parsed)
                .is_err()
        );
        // A fresh salt each time.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
    }
}

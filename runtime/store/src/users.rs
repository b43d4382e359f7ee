//! Accounts: one record per username in the `users` bucket.

use nimbus_core::Username;
use serde::{Deserialize, Serialize};

use crate::codec::decode;
use crate::{Storage, StoreError};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The validated username.
    pub username: Username,
    /// bcrypt hash of the password.
    pub password_hash: String,
    /// RFC 3339 registration time.
    pub created: String,
}

impl Storage {
    /// Store a new user; [`StoreError::AlreadyExists`] if the name is taken.
    pub async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(user).expect("user serialises");
        self.create(&self.users, "create user", &user.username, value.into())
            .await
            .map(|_| ())
    }

    /// The user called `username`, if any.
    pub async fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let entry = self
            .read_key(&self.users, "read user", username.as_str())
            .await?;
        entry.map(|(v, _)| decode(username, &v)).transpose()
    }
}

//! Where a provider's API key is kept: the OS keychain where Hearth has one (the macOS
//! Keychain, the Windows Credential Manager, through the `keyring` crate), otherwise the
//! private keys file of [`super::store`]. A key the keychain refuses (a locked or missing
//! keychain, a headless session) goes to the file instead, with a warning that never carries
//! the key.
//!
//! Linux has no keychain here: the Secret Service needs a D-Bus session that headless servers
//! and minimal desktops lack, and its client links libdbus; the 0600 file has the protection
//! of Hearth's own `settings.json` and `api-token` (docs/providers.md).
//!
//! [`SecretVault`] is the seam: the store is tested with an in-memory vault, the OS keychain
//! is compiled on macOS and Windows only.

use std::path::Path;
use std::sync::Arc;

/// A keychain that holds secrets by account name.
pub trait SecretVault: Send + Sync + std::fmt::Debug {
    /// What the keys file records for a key kept here (`"os-keychain"`).
    fn name(&self) -> &'static str;
    fn store(&self, account: &str, secret: &str) -> Result<(), String>;
    /// The secret, `Ok(None)` when there is none.
    fn load(&self, account: &str) -> Result<Option<String>, String>;
    /// Removes the secret; removing one that is not there is not an error.
    fn delete(&self, account: &str) -> Result<(), String>;
}

/// The name the keys file records for a key in the OS keychain (used by the keychains built on
/// macOS and Windows only).
#[cfg_attr(
    not(any(target_os = "macos", target_os = "windows", test)),
    allow(dead_code)
)]
pub const OS_KEYCHAIN: &str = "os-keychain";

/// The OS keychain for the data folder `data_dir`, where this platform has one.
pub fn os_keychain(data_dir: &Path) -> Option<Arc<dyn SecretVault>> {
    os::keychain(data_dir)
}

#[cfg(any(target_os = "macos", target_os = "windows"))]
mod os {
    use super::{SecretVault, OS_KEYCHAIN};
    use std::path::Path;
    use std::sync::Arc;

    /// Keys under one service per data folder, so two Hearth data folders (a test's, the
    /// user's) never read each other's keys.
    #[derive(Debug)]
    struct OsKeychain {
        service: String,
    }

    pub fn keychain(data_dir: &Path) -> Option<Arc<dyn SecretVault>> {
        Some(Arc::new(OsKeychain {
            service: format!("Hearth provider keys ({})", data_dir.display()),
        }))
    }

    impl OsKeychain {
        fn entry(&self, account: &str) -> Result<keyring::Entry, String> {
            keyring::Entry::new(&self.service, account).map_err(|error| error.to_string())
        }
    }

    impl SecretVault for OsKeychain {
        fn name(&self) -> &'static str {
            OS_KEYCHAIN
        }

        fn store(&self, account: &str, secret: &str) -> Result<(), String> {
            self.entry(account)?
                .set_password(secret)
                .map_err(|error| error.to_string())
        }

        fn load(&self, account: &str) -> Result<Option<String>, String> {
            match self.entry(account)?.get_password() {
                Ok(secret) => Ok(Some(secret)),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        }

        fn delete(&self, account: &str) -> Result<(), String> {
            match self.entry(account)?.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(error) => Err(error.to_string()),
            }
        }
    }
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
mod os {
    use super::SecretVault;
    use std::path::Path;
    use std::sync::Arc;

    pub fn keychain(_data_dir: &Path) -> Option<Arc<dyn SecretVault>> {
        None
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use super::SecretVault;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// An in-memory keychain for tests; `refuse` makes every call fail, as a locked one does.
    #[derive(Debug, Default)]
    pub struct MemoryVault {
        pub secrets: Mutex<BTreeMap<String, String>>,
        pub refuse: bool,
    }

    impl SecretVault for MemoryVault {
        fn name(&self) -> &'static str {
            super::OS_KEYCHAIN
        }

        fn store(&self, account: &str, secret: &str) -> Result<(), String> {
            if self.refuse {
                return Err("the keychain is locked".into());
            }
            self.secrets
                .lock()
                .unwrap()
                .insert(account.into(), secret.into());
            Ok(())
        }

        fn load(&self, account: &str) -> Result<Option<String>, String> {
            if self.refuse {
                return Err("the keychain is locked".into());
            }
            Ok(self.secrets.lock().unwrap().get(account).cloned())
        }

        fn delete(&self, account: &str) -> Result<(), String> {
            if self.refuse {
                return Err("the keychain is locked".into());
            }
            self.secrets.lock().unwrap().remove(account);
            Ok(())
        }
    }
}

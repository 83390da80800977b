//! The Secrets the resources name, written where the compile reads secrets: the folder layout
//! of `--secrets-dir` with a folder per namespace, `<dir>/<namespace>/<secret>/<key>`, the
//! layout the kubelet gives a mounted Secret. The JWT, TLS and `API` loaders then read a
//! cluster's secrets exactly as they read a mounted folder's.
//!
//! Only Secrets that some resource names are written, in that resource's namespace; folders of
//! Secrets no longer named are removed. The folder must be private and memory-backed (the
//! manifests mount an `emptyDir` with `medium: Memory`): folders are created 0700, files 0600.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::objects::is_plain_name;

/// `(namespace, secret)` → key → bytes: what the folder is to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretFiles(pub BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>);

impl SecretFiles {
    /// The named Secrets that exist: `wanted` is `(namespace, secret)` pairs, `seen` the watched
    /// Secrets by `namespace/name`. Keys that cannot be a file name are left out.
    pub fn select<'a>(
        wanted: impl IntoIterator<Item = &'a (String, String)>,
        seen: &BTreeMap<String, Secret>,
    ) -> Self {
        let mut files = BTreeMap::new();
        for (namespace, name) in wanted {
            let Some(secret) = seen.get(&format!("{namespace}/{name}")) else {
                continue;
            };
            let keys = secret
                .data
                .iter()
                .flatten()
                .filter(|(key, _)| is_plain_name(key))
                .map(|(key, value)| (key.clone(), value.0.clone()))
                .collect();
            files.insert((namespace.clone(), name.clone()), keys);
        }
        SecretFiles(files)
    }

    /// A digest of every name and byte, for deciding whether anything changed.
    pub fn digest(&self) -> String {
        self.digest_of(self.0.keys())
    }

    /// A digest of the named Secrets only (a missing one counts as absent): what one
    /// resource's compile reads.
    pub fn digest_of<'a>(&self, names: impl IntoIterator<Item = &'a (String, String)>) -> String {
        let mut hash = Sha256::new();
        let mut framed = |part: &[u8]| {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        };
        for name in names {
            framed(name.0.as_bytes());
            framed(name.1.as_bytes());
            let Some(keys) = self.0.get(name) else {
                framed(b"absent");
                continue;
            };
            for (key, value) in keys {
                framed(key.as_bytes());
                framed(value);
            }
        }
        hex::encode(hash.finalize())
    }

    /// Makes `dir` hold exactly these Secrets. A file is rewritten only when its bytes
    /// changed (renamed into place, so a reader never sees half a key).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        create_private_dir(dir)?;
        for ((namespace, name), keys) in &self.0 {
            let folder = dir.join(namespace).join(name);
            create_private_dir(&dir.join(namespace))?;
            create_private_dir(&folder)?;
            for (key, value) in keys {
                let path = folder.join(key);
                if fs::read(&path).ok().as_deref() == Some(value.as_slice()) {
                    continue;
                }
                let staged = folder.join(format!(".{key}.new"));
                write_private(&staged, value)?;
                fs::rename(&staged, &path)?;
            }
            // keys the Secret no longer has
            for entry in fs::read_dir(&folder)? {
                let entry = entry?;
                let key = entry.file_name().to_string_lossy().into_owned();
                if !keys.contains_key(&key) {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        self.remove_unnamed(dir)
    }

    /// Removes the folders of Secrets no longer named (and of namespaces left empty).
    fn remove_unnamed(&self, dir: &Path) -> io::Result<()> {
        for namespace in fs::read_dir(dir)? {
            let namespace = namespace?;
            if !namespace.file_type()?.is_dir() {
                continue;
            }
            let ns = namespace.file_name().to_string_lossy().into_owned();
            let mut left = 0;
            for secret in fs::read_dir(namespace.path())? {
                let secret = secret?;
                let name = secret.file_name().to_string_lossy().into_owned();
                if self.0.contains_key(&(ns.clone(), name)) {
                    left += 1;
                } else {
                    fs::remove_dir_all(secret.path())?;
                }
            }
            if left == 0 {
                fs::remove_dir(namespace.path())?;
            }
        }
        Ok(())
    }
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => return Err(error),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    io::Write::write_all(&mut options.open(path)?, bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(keys: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                keys.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn only_named_secrets_are_written_and_a_rotation_replaces_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = BTreeMap::new();
        seen.insert(
            "ml/jwt".to_string(),
            secret(&[("secret", "one"), ("old", "x")]),
        );
        seen.insert("ml/other".to_string(), secret(&[("secret", "not named")]));
        let wanted = [("ml".to_string(), "jwt".to_string())];
        SecretFiles::select(&wanted, &seen)
            .write(dir.path())
            .unwrap();
        assert_eq!(fs::read(dir.path().join("ml/jwt/secret")).unwrap(), b"one");
        assert!(!dir.path().join("ml/other").exists());

        seen.insert("ml/jwt".to_string(), secret(&[("secret", "two")]));
        let files = SecretFiles::select(&wanted, &seen);
        files.write(dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("ml/jwt/secret")).unwrap(), b"two");
        assert!(!dir.path().join("ml/jwt/old").exists());

        SecretFiles::default().write(dir.path()).unwrap();
        assert!(!dir.path().join("ml").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            files.write(dir.path()).unwrap();
            let mode = fs::metadata(dir.path().join("ml/jwt/secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

//! The bearer token, read from a file and re-read periodically and after a 401.
//!
//! Projected ServiceAccount tokens rotate on disk (the kubelet rewrites them
//! about hourly), so caching the file content forever would eventually send an
//! expired token.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token file with a cached content.
#[derive(Debug)]
pub struct TokenSource {
    path: Option<PathBuf>,
    refresh: Duration,
    cached: Mutex<Option<(String, Instant)>>,
    /// The last read failed and was logged: the next failures are not (one
    /// ERROR per episode, not one per send).
    failing: AtomicBool,
}

impl TokenSource {
    /// Reads `path` (none: requests carry no token), caching it for `refresh`.
    pub fn new(path: Option<PathBuf>, refresh: Duration) -> Self {
        Self {
            path,
            refresh,
            cached: Mutex::new(None),
            failing: AtomicBool::new(false),
        }
    }

    /// The current token; re-reads the file when the cache is older than the
    /// refresh interval. A read failure keeps the previous token and is logged.
    pub async fn get(&self) -> Option<String> {
        let path = self.path.as_ref()?;
        if let Some((token, at)) = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if at.elapsed() < self.refresh {
                return Some(token.clone());
            }
        }
        match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %path.display(), "audit bearer token file readable again");
                }
                let token = text.trim().to_owned();
                *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((token.clone(), Instant::now()));
                Some(token)
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(path = %path.display(), error = %e, "cannot read the audit bearer token file; requests go without it (or with the last token read) until it is readable");
                }
                self.cached
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|(t, _)| t.clone())
            }
        }
    }

    /// Forgets the cached token so the next `get` reads the file (after a 401).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_is_re_read_after_invalidation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = TokenSource::new(Some(path.clone()), Duration::from_secs(3600));
        assert_eq!(source.get().await.as_deref(), Some("first"));
        std::fs::write(&path, "second").unwrap();
        assert_eq!(source.get().await.as_deref(), Some("first"), "cached");
        source.invalidate();
        assert_eq!(source.get().await.as_deref(), Some("second"));
    }

    #[tokio::test]
    async fn no_path_means_no_token() {
        assert_eq!(TokenSource::new(None, Duration::ZERO).get().await, None);
    }
}

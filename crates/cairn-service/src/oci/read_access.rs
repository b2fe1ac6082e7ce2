//! Read access as a check of its own, for work that must only happen for
//! callers allowed to read a repository — above all the pull-through
//! mirror, which asks an upstream registry about the repository named in
//! the request: an unauthorised caller must not make it ask anything.
//!
//! This is the same decision every OCI read makes
//! (`Registry::oci_may_read`); it does not replace those checks.

use super::{OciError, Repository};
use crate::Registry;
use crate::identity::Caller;

impl Registry {
    /// Checks that `caller` (`None`: anonymous) may read `repository`
    /// (`<namespace>/<name>`): `NAME_INVALID` for a name that is not a
    /// repository of this registry, 401 with a challenge for an anonymous
    /// caller when anonymous reads are off, `DENIED` for a token that does
    /// not reach the namespace.
    pub fn oci_authorize_read(
        &self,
        caller: Option<&Caller>,
        repository: &str,
    ) -> Result<(), OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_read(caller, &repository)
    }
}

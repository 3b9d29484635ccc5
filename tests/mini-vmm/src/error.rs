// SPDX-License-Identifier: GPL-2.0
//
// Errors: a failed mshv-ioctls call (what was asked, and how it failed), and
// the errno of the last failed system call.

use std::fmt;

use mshv_ioctls::MshvError;

/// A failed mshv-ioctls call. Callers turn it into their own error: the
/// tests into a failure by errno (`what` names the call the way their
/// reports do), the demo into a message.
#[derive(Clone, Debug)]
pub struct Error {
    /// The call and its arguments, e.g. "create_vcpu(1)".
    pub what: String,
    /// What mshv-ioctls returned.
    pub err: MshvError,
}

impl Error {
    pub fn new(what: impl Into<String>, err: MshvError) -> Error {
        Error {
            what: what.into(),
            err,
        }
    }

    /// The errno (a failed hypercall is EIO, as mshv-ioctls maps it).
    pub fn errno(&self) -> i32 {
        self.err.errno()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.err)
    }
}

impl std::error::Error for Error {}

/// The errno of the last failed system call of this thread.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

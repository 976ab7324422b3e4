//! Engine errors as executor errors, shared by the executor, its controllers and the
//! overlay networks.

use bollard::errors::Error as BollardError;

use crate::exec::ExecError;

/// Maps engine errors to executor errors: refusals are permanent, transport trouble is
/// temporary (the runner retries it).
pub(super) fn map_err(e: BollardError) -> ExecError {
    match e {
        BollardError::DockerResponseServerError { message, .. } => ExecError::Engine(message),
        BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. } => {
            ExecError::Engine(e.to_string())
        }
        other => ExecError::Unavailable(format!("docker engine unavailable: {other}")),
    }
}

/// The HTTP status of an engine refusal, if it was one.
pub(super) fn status_code(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

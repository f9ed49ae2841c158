//! How a login fails: one error, with its stable API code, HTTP status and Retry-After.

use crate::login::flow::Blocked;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("this login has expired or does not exist")]
    FlowNotFound,
    #[error("bad input: {0}")]
    BadInput(&'static str),
    #[error("the password is too long")]
    PasswordTooLong,
    #[error("the ID, password or security code is wrong")]
    Failed,
    #[error("the security code was entered wrongly too often")]
    CodeExhausted,
    #[error("the security code has expired")]
    CodeExpired,
    #[error("no security code is waiting: ask for a new one")]
    NoCode,
    #[error("too many attempts; try again in {0} s")]
    Throttled(u64),
    #[error("too many codes were sent; try again in {0} s")]
    SendLimited(u64),
    #[error("a code was sent moments ago; try again in {0} s")]
    ResendTooSoon(u64),
    #[error("the security code could not be delivered")]
    Delivery,
    #[error("the second step cannot be done for this account")]
    Blocked(Blocked),
    #[error("this account already has the maximum number of trusted devices")]
    DevicesFull,
    /// A store the step needs (PostgreSQL, Redis, the hashing queue) could not take it:
    /// 503 with the one `Retry-After` ([`crate::outage`]); nothing was decided.
    #[error("the server is busy; try again shortly")]
    Busy,
    /// A bug (never a store error): 500.
    #[error("internal error")]
    Internal,
    #[error("the login has not been approved in the app")]
    ApprovalRequired,
    #[error("the password is right; approve the login in the app")]
    AwaitingApproval,
    #[error("too many approval requests; try again in {0} s or use a security code")]
    ApprovalLimited(u64),
}

impl LoginError {
    /// Stable machine-readable code for the JSON API.
    pub fn code(&self) -> &'static str {
        match self {
            LoginError::FlowNotFound => "flow_not_found",
            LoginError::BadInput("device_name") => "bad_device_name",
            LoginError::BadInput(_) => "bad_request",
            LoginError::PasswordTooLong => "password_too_long",
            LoginError::Failed => "login_failed",
            LoginError::CodeExhausted => "code_exhausted",
            LoginError::CodeExpired => "code_expired",
            LoginError::NoCode => "no_code",
            LoginError::Throttled(_) => "too_many_attempts",
            LoginError::SendLimited(_) => "too_many_codes",
            LoginError::ResendTooSoon(_) => "resend_too_soon",
            LoginError::Delivery => "delivery_failed",
            LoginError::Blocked(_) => "second_step_unavailable",
            LoginError::DevicesFull => "too_many_devices",
            LoginError::Busy => "busy",
            LoginError::Internal => "internal",
            LoginError::ApprovalRequired => "approval_required",
            LoginError::AwaitingApproval => "awaiting_approval",
            LoginError::ApprovalLimited(_) => "too_many_approvals",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            LoginError::FlowNotFound => 404,
            LoginError::BadInput(_) | LoginError::PasswordTooLong => 400,
            LoginError::Failed
            | LoginError::CodeExhausted
            | LoginError::CodeExpired
            | LoginError::NoCode => 401,
            LoginError::Throttled(_)
            | LoginError::SendLimited(_)
            | LoginError::ResendTooSoon(_) => 429,
            LoginError::Delivery | LoginError::Busy => 503,
            LoginError::Blocked(_) => 403,
            LoginError::DevicesFull => 409,
            LoginError::Internal => 500,
            LoginError::ApprovalRequired => 401,
            LoginError::AwaitingApproval => 202,
            LoginError::ApprovalLimited(_) => 429,
        }
    }

    /// Seconds for `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            LoginError::Throttled(s)
            | LoginError::SendLimited(s)
            | LoginError::ResendTooSoon(s)
            | LoginError::ApprovalLimited(s) => Some(*s),
            LoginError::Busy => Some(crate::outage::RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

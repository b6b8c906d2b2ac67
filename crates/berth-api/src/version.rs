//! API versions berth serves and their comparison.

/// Highest Engine API version berth implements.
pub const API_MAX: &str = "1.50";
/// Lowest version accepted; the docker CLI 28 never asks for less than this on its own.
pub const API_MIN: &str = "1.24";

/// A parsed "major.minor" API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
    pub fn max() -> ApiVersion {
        ApiVersion(1, 50)
    }
    pub fn min() -> ApiVersion {
        ApiVersion(1, 24)
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(ApiVersion::parse("1.41"), Some(ApiVersion(1, 41)));
        assert!(ApiVersion::parse("1.9").unwrap() < ApiVersion::parse("1.10").unwrap());
        assert_eq!(ApiVersion::parse("x"), None);
        assert_eq!(ApiVersion::parse(API_MAX), Some(ApiVersion::max()));
        assert_eq!(ApiVersion::parse(API_MIN), Some(ApiVersion::min()));
    }
}

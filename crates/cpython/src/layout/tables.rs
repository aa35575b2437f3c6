//! Static layout tables (placeholder until filled).
use super::{Layout, Version};

/// The static layout for `version`, if known.
pub fn known_layout(_version: Version) -> Option<Layout> {
    None
}
